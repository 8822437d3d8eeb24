package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/matryer/is"
)

// The agents API (api.md §1, §2, §3 and §5.2; original-api.md §3.2 and §6),
// driven over HTTP against a real server. Helpers here carry an agent prefix
// because other files of the package define their own.

const agentModel = "anthropic/claude-sonnet-4-6"

var (
	agentUUIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	agentTimeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00$`)
)

// agentWith is the smallest valid create body (runtime era) with kv pairs
// added or replaced.
func agentWith(kv ...any) map[string]any {
	b := map[string]any{"name": "hello", "model": agentModel, "runtime": "claude"}
	for i := 0; i+1 < len(kv); i += 2 {
		b[kv[i].(string)] = kv[i+1]
	}
	return b
}

// agentSkill is a valid inline skill.
func agentSkill(name string) map[string]any {
	return map[string]any{
		"name":        name,
		"description": "Does " + name,
		"content":     "---\nname: " + name + "\ndescription: Does " + name + "\n---\n\nSteps.\n",
	}
}

// agentSkills returns n distinct valid inline skills.
func agentSkills(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = agentSkill(fmt.Sprintf("skill-%d", i))
	}
	return out
}

// agentMCPs returns n distinct valid url MCP servers.
func agentMCPs(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"name": fmt.Sprintf("s%d", i), "type": "url", "url": "https://mcp.example.com/" + fmt.Sprint(i)}
	}
	return out
}

// agentJSON is v as it looks after a JSON round trip, for comparing with a
// decoded response.
func agentJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// agentFieldError returns the item of a 422 list detail whose loc is loc,
// or nil.
func agentFieldError(r apitest.Response, loc ...any) map[string]any {
	items, _ := r.Obj()["detail"].([]any)
	want, _ := json.Marshal(loc)
	for _, it := range items {
		m, _ := it.(map[string]any)
		got, _ := json.Marshal(m["loc"])
		if string(got) == string(want) {
			return m
		}
	}
	return nil
}

// agentWantLoc checks that a 422 list detail has an item of pydantic type
// typ at loc, in the original's item shape {type, loc, msg, input}.
func agentWantLoc(typ string, loc ...any) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		e := agentFieldError(r, loc...)
		is.True(e != nil)        // the 422 list detail has an item whose loc names the field
		is.Equal(e["type"], typ) // the 422 item's pydantic type
		msg, _ := e["msg"].(string)
		is.True(msg != "") // the 422 item has a msg
		_, ok := e["input"]
		is.True(ok) // the 422 item has an input
	}
}

// agentWantValueError checks a custom-validator 422 on field: a list item
// with loc [field], type value_error and a "Value error, " message.
func agentWantValueError(field string) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		e := agentFieldError(r, field)
		is.True(e != nil)                  // the 422 list detail has an item with loc [field]
		is.Equal(e["type"], "value_error") // custom validators report value_error
		msg, _ := e["msg"].(string)
		is.True(strings.HasPrefix(msg, "Value error, ")) // pydantic's custom-validator wording
	}
}

// agentWantField checks one field of the returned object.
func agentWantField(key string, want any) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		is.Equal(r.Obj()[key], agentJSON(want)) // the response field
	}
}

// agentChecks runs several checks in order.
func agentChecks(checks ...func(*is.I, apitest.Response)) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		for _, c := range checks {
			c(is, r)
		}
	}
}

// agentWantExactDetail checks the detail string exactly.
func agentWantExactDetail(want string) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		is.Equal(r.Detail(), want) // the exact detail string
	}
}

// agentKeys returns the sorted keys of m.
func agentKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// agentIDs returns the ids of a list response, in order.
func agentIDs(r apitest.Response) []string {
	var ids []string
	for _, it := range r.Data() {
		m, _ := it.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

func TestAgentCreateFull(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")

	skill := map[string]any{
		"name":        "release-notes",
		"description": "Writes release notes",
		// Front matter, HTML-ish characters, non-ASCII, CRLF and tabs must all
		// come back byte for byte.
		"content": "---\nname: release-notes\ndescription: Writes release notes\n---\n\n# Notes\r\nUse <h2> & \"quotes\" — ünïcödé 🚀\n\tindented\n",
	}
	mcp := map[string]any{"name": "docs", "type": "url", "url": "https://mcp.example.com/sse", "headers": map[string]any{"Authorization": "Bearer x"}}
	body := map[string]any{
		"name": "reviewer", "model": agentModel, "runtime": "claude",
		"system": "You review code.", "description": "Reviews pull requests",
		"skills": []any{skill}, "mcp_servers": []any{mcp},
		"metadata": map[string]any{"team": "platform", "tier": "gold"},
	}
	r := a.Do("POST", "/agents", tok, body)
	is.Equal(r.Status, http.StatusCreated)                                      // create is 201
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
	got := r.Obj()
	id, _ := got["id"].(string)
	is.True(agentUUIDRE.MatchString(id))                            // id is a lowercase canonical UUID
	is.Equal(got["type"], "agent")                                  // type is agent
	is.Equal(got["name"], "reviewer")                               // name echoed
	is.Equal(got["description"], "Reviews pull requests")           // description echoed
	is.Equal(got["system"], "You review code.")                     // system echoed
	is.Equal(got["model"], agentModel)                              // canonical model echoed
	is.Equal(got["runtime"], "claude")                              // runtime echoed
	is.Equal(got["provider"], "anthropic")                          // provider is the model's provider
	is.Equal(got["environment_id"], nil)                            // no environment
	is.Equal(got["skills"], agentJSON([]any{skill}))                // skills echoed exactly as sent
	is.Equal(got["mcp_servers"], agentJSON([]any{mcp}))             // mcp_servers echoed
	is.Equal(got["metadata"], agentJSON(body["metadata"]))          // metadata echoed
	is.Equal(got["version"], 1.0)                                   // a new agent is version 1
	is.Equal(got["archived_at"], nil)                               // a new agent is not archived
	is.True(agentTimeRE.MatchString(fmt.Sprint(got["created_at"]))) // created_at in the contract's format
	is.True(agentTimeRE.MatchString(fmt.Sprint(got["updated_at"]))) // updated_at in the contract's format
	is.Equal(got["created_at"], got["updated_at"])                  // a new agent was never updated
	_, hasTools := got["tools"]
	is.True(!hasTools) // no tools key

	g := a.Do("GET", "/agents/"+id, tok, nil)
	is.Equal(g.Status, http.StatusOK) // the created agent is readable
	is.Equal(g.Body, r.Body)          // GET returns what create returned

	v := a.Do("GET", "/agents/"+id+"/versions", tok, nil)
	is.Equal(v.Status, http.StatusOK) // versions of a new agent
	is.Equal(len(v.Data()), 1)        // create writes exactly the version-1 snapshot
	snap, _ := v.Data()[0].(map[string]any)
	is.Equal(snap["version"], 1.0) // the snapshot is version 1
	for _, k := range []string{"id", "type", "name", "description", "system", "model", "runtime", "provider", "environment_id", "skills", "mcp_servers", "metadata"} {
		is.Equal(snap[k], got[k]) // the snapshot holds the agent's fields
	}
}

func TestAgentCreateMinimalShape(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")

	// Legacy and unknown keys are ignored, never echoed.
	r := a.Do("POST", "/agents", tok, agentWith("tools", []any{"bash"}, "colour", "blue"))
	is.Equal(r.Status, http.StatusCreated) // minimal create is 201
	got := r.Obj()
	is.Equal(agentKeys(got), []string{ // exactly the agent shape's keys (api.md §3)
		"archived_at", "created_at", "description", "environment_id", "id", "mcp_servers", "metadata",
		"model", "name", "provider", "runtime", "skills", "system", "type", "updated_at", "version",
	})
	is.Equal(got["skills"], []any{})            // skills default to []
	is.Equal(got["mcp_servers"], []any{})       // mcp_servers default to []
	is.Equal(got["metadata"], map[string]any{}) // metadata defaults to {}
	is.Equal(got["system"], nil)                // system defaults to null
	is.Equal(got["description"], nil)           // description defaults to null
	is.Equal(got["environment_id"], nil)        // environment_id defaults to null
	is.Equal(got["version"], 1.0)               // version 1
	is.Equal(got["archived_at"], nil)           // not archived
	is.Equal(got["type"], "agent")              // type agent
	is.Equal(got["provider"], "anthropic")      // provider derived from the model
}

// TestAgentCreateValidation covers the body, schema and catalogue checks of
// POST /agents and their order: 400 JSON, 422 schema, catalogue (400/422),
// then lookups (404).
func TestAgentCreateValidation(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	unknownEnv := "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"
	runtimeOf := func(runtime, provider, model string) func(*is.I, apitest.Response) {
		return agentChecks(agentWantField("runtime", runtime), agentWantField("provider", provider), agentWantField("model", model))
	}
	a.Run(t, "", []apitest.Scenario{
		// 400: not a JSON object.
		{Name: "invalid JSON", Method: "POST", Path: "/agents", Token: tok, Body: `{"name": "x",`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "empty body", Method: "POST", Path: "/agents", Token: tok, Body: ``, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "JSON array body", Method: "POST", Path: "/agents", Token: tok, Body: `[{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude"}]`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "JSON string body", Method: "POST", Path: "/agents", Token: tok, Body: `"agent"`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "JSON null body", Method: "POST", Path: "/agents", Token: tok, Body: `null`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "trailing data after the object", Method: "POST", Path: "/agents", Token: tok, Body: `{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude"} {}`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "trailing garbage after the object", Method: "POST", Path: "/agents", Token: tok, Body: `{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude"} x`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "rejected bodies stored nothing", Method: "GET", Path: "/agents", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(len(r.Data()), 0) }}, // no rejected create stored an agent

		// 422: schema, with the pydantic list detail.
		{Name: "only Name: model missing", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "x"}, WantStatus: 422,
			Check: agentChecks(agentWantLoc("missing", "model"), func(is *is.I, r apitest.Response) {
				e := agentFieldError(r, "model")
				is.Equal(e["msg"], "Field required")              // pydantic's missing wording
				is.Equal(e["input"], map[string]any{"name": "x"}) // a missing item's input is the whole body
			})},
		{Name: "empty object: name and model missing", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{}, WantStatus: 422,
			Check: agentChecks(agentWantLoc("missing", "name"), agentWantLoc("missing", "model"))},
		{Name: "name is a number", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("name", 123), WantStatus: 422, Check: agentWantLoc("string_type", "name")},
		{Name: "name is null", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("name", nil), WantStatus: 422, Check: agentWantLoc("string_type", "name")},
		{Name: "name longer than 200", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("name", strings.Repeat("n", 201)), WantStatus: 422, Check: agentWantLoc("string_too_long", "name")},
		{Name: "name of 200 accepted", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("name", strings.Repeat("n", 200)), WantStatus: 201},
		{Name: "empty name accepted", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("name", ""), WantStatus: 201, Check: agentWantField("name", "")},
		{Name: "model is a number", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", 123), WantStatus: 422, Check: agentWantLoc("string_type", "model")},
		{Name: "runtime is a number", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", 5), WantStatus: 422, Check: agentWantLoc("string_type", "runtime")},
		{Name: "provider is a number", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("provider", 5), WantStatus: 422, Check: agentWantLoc("string_type", "provider")},
		{Name: "system is a number", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("system", 5), WantStatus: 422, Check: agentWantLoc("string_type", "system")},
		{Name: "description is a boolean", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("description", true), WantStatus: 422, Check: agentWantLoc("string_type", "description")},
		{Name: "environment_id is a number", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", 5), WantStatus: 422, Check: agentWantLoc("string_type", "environment_id")},
		{Name: "skills is not a list", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("skills", "pdf"), WantStatus: 422, Check: agentWantLoc("list_type", "skills")},
		{Name: "mcp_servers is not a list", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("mcp_servers", map[string]any{"name": "s1"}), WantStatus: 422, Check: agentWantLoc("list_type", "mcp_servers")},
		{Name: "metadata is not an object", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("metadata", []any{"a"}), WantStatus: 422, Check: agentWantLoc("dict_type", "metadata")},
		{Name: "metadata value is not a string", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("metadata", map[string]any{"a": "x", "b": 1}), WantStatus: 422, Check: agentWantLoc("string_type", "metadata", "b")},
		{Name: "schema error before unknown runtime", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("name", 123, "runtime", "nope"), WantStatus: 422, Check: agentWantLoc("string_type", "name")},

		// Runtime era catalogue.
		{Name: "unknown runtime is 400", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "nope"), WantStatus: 400, WantDetail: "Unknown runtime: nope. Must be one of: ["},
		{Name: "unknown runtime before environment lookup", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "nope", "environment_id", unknownEnv), WantStatus: 400, WantDetail: "Unknown runtime"},
		{Name: "bare model in runtime era", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "claude-sonnet-4-6"), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "unknown provider prefix", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "opencode", "model", "mistral/large"), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "empty model id", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "anthropic/"), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "model id starting with a hyphen", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "anthropic/-sonnet"), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "model id with a space", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "anthropic/claude sonnet"), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "local model other than shell", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "shell", "model", "local/bash"), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "bad model before environment lookup", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "nope", "environment_id", unknownEnv), WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "claude cannot serve openai", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "openai/gpt-4.1"), WantStatus: 422,
			WantDetail: "Runtime claude cannot serve model openai/gpt-4.1: provider openai not in ["},
		{Name: "codex cannot serve anthropic", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "codex"), WantStatus: 422, WantDetail: "cannot serve model"},
		{Name: "gemini cannot serve openai", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "gemini", "model", "openai/o3"), WantStatus: 422, WantDetail: "cannot serve model"},
		{Name: "shell cannot serve anthropic", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "shell"), WantStatus: 422, WantDetail: "cannot serve model"},
		{Name: "claude cannot serve local/shell", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "local/shell"), WantStatus: 422, WantDetail: "cannot serve model"},
		{Name: "shell runtime with local/shell", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "shell", "model", "local/shell"), WantStatus: 201, Check: runtimeOf("shell", "local", "local/shell")},
		{Name: "codex with openai", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "codex", "model", "openai/o4-mini"), WantStatus: 201, Check: runtimeOf("codex", "openai", "openai/o4-mini")},
		{Name: "gemini with google", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "gemini", "model", "google/gemini-2.5-flash"), WantStatus: 201, Check: runtimeOf("gemini", "google", "google/gemini-2.5-flash")},
		{Name: "opencode with google", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "opencode", "model", "google/gemini-2.5-pro"), WantStatus: 201, Check: runtimeOf("opencode", "google", "google/gemini-2.5-pro")},
		{Name: "opencode with openai", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("runtime", "opencode", "model", "openai/gpt-4.1"), WantStatus: 201, Check: runtimeOf("opencode", "openai", "openai/gpt-4.1")},
		{Name: "no closed list of model ids", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("model", "anthropic/claude-future-9.1:beta"), WantStatus: 201, Check: runtimeOf("claude", "anthropic", "anthropic/claude-future-9.1:beta")},

		// Provider era: provider + bare model, runtime derived.
		{Name: "provider anthropic and bare model", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": "claude-sonnet-4-6"}, WantStatus: 201, Check: runtimeOf("claude", "anthropic", "anthropic/claude-sonnet-4-6")},
		{Name: "provider openai derives codex", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "openai", "model": "gpt-4.1"}, WantStatus: 201, Check: runtimeOf("codex", "openai", "openai/gpt-4.1")},
		{Name: "provider google derives gemini", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "google", "model": "gemini-2.5-pro"}, WantStatus: 201, Check: runtimeOf("gemini", "google", "google/gemini-2.5-pro")},
		{Name: "provider local derives shell", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "local", "model": "shell"}, WantStatus: 201, Check: runtimeOf("shell", "local", "local/shell")},
		{Name: "matching prefix stripped", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": "anthropic/claude-haiku-4-5"}, WantStatus: 201, Check: runtimeOf("claude", "anthropic", "anthropic/claude-haiku-4-5")},
		{Name: "provider with explicit runtime", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "openai", "model": "gpt-4.1", "runtime": "opencode"}, WantStatus: 201, Check: runtimeOf("opencode", "openai", "openai/gpt-4.1")},
		{Name: "provider the runtime cannot serve", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "openai", "model": "gpt-4.1", "runtime": "claude"}, WantStatus: 422, WantDetail: "cannot serve model"},
		{Name: "blank model", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": ""}, WantStatus: 422, WantDetail: "Model must be a non-empty string"},
		{Name: "whitespace model", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": "   "}, WantStatus: 422, WantDetail: "Model must be a non-empty string"},
		{Name: "prefix only model", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": "anthropic/"}, WantStatus: 422, WantDetail: "Model must be a non-empty string"},
		{Name: "mismatched prefix", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": "openai/gpt-4o"}, WantStatus: 422,
			WantDetail: "Model provider prefix 'openai' does not match provider 'anthropic'"},
		{Name: "unknown provider", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "foo", "model": "bar"}, WantStatus: 422, WantDetail: "Unknown provider: foo"},
		// api.md §1 (which wins over §5.2's "free-form"): the canonical model
		// must still have the <provider>/<model_id> form.
		{Name: "provider era model not of the model_id form", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "anthropic", "model": "claude sonnet"}, WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "provider local with a model other than shell", Method: "POST", Path: "/agents", Token: tok, Body: map[string]any{"name": "p", "provider": "local", "model": "bash"}, WantStatus: 422, WantDetail: "Unknown model"},
	})
}

func TestAgentSkills(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	skillsWith := func(items ...any) map[string]any { return agentWith("skills", items) }
	echo := func(items ...any) func(*is.I, apitest.Response) { return agentWantField("skills", items) }
	with := func(key string, v any) map[string]any {
		s := agentSkill("one")
		s[key] = v
		return s
	}
	without := func(key string) map[string]any {
		s := agentSkill("one")
		delete(s, key)
		return s
	}
	inline := agentSkill("pdf-tools")
	wholeRepo := map[string]any{"source": "anthropics/skills"}
	namedGitHub := map[string]any{"type": "github", "source": "anthropics/skills", "name": "pdf", "description": "PDF tools"}
	bad := agentWantValueError("skills")
	a.Run(t, "", []apitest.Scenario{
		{Name: "inline skill echoed exactly", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(inline), WantStatus: 201, Check: echo(inline)},
		{Name: "github whole repo echoed without name", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(wholeRepo), WantStatus: 201, Check: echo(wholeRepo)},
		{Name: "github named skill echoed", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(namedGitHub), WantStatus: 201, Check: echo(namedGitHub)},
		{Name: "named and whole-repo entries of one source coexist", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(namedGitHub, wholeRepo, inline), WantStatus: 201, Check: echo(namedGitHub, wholeRepo, inline)},
		{Name: "name of 64 characters", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("a" + strings.Repeat("b", 63))), WantStatus: 201},
		{Name: "content of exactly 64 KiB", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("content", strings.Repeat("x", 64<<10))), WantStatus: 201},
		{Name: "description of 1024 characters", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("description", strings.Repeat("é", 1024))), WantStatus: 201},
		{Name: "20 skills", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkills(20)...), WantStatus: 201},

		{Name: "item not an object", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith("pdf"), WantStatus: 422, WantDetail: "must be an object", Check: bad},
		{Name: "item null", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(nil), WantStatus: 422, WantDetail: "must be an object", Check: bad},
		{Name: "name with uppercase", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("Pdf")), WantStatus: 422, WantDetail: "must match", Check: bad},
		{Name: "name with leading hyphen", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("-pdf")), WantStatus: 422, WantDetail: "must match", Check: bad},
		{Name: "name with underscore", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("pdf_tools")), WantStatus: 422, WantDetail: "must match", Check: bad},
		{Name: "empty name", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("")), WantStatus: 422, WantDetail: "must match", Check: bad},
		{Name: "name of 65 characters", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("a" + strings.Repeat("b", 64))), WantStatus: 422, WantDetail: "must match", Check: bad},
		{Name: "missing name", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(without("name")), WantStatus: 422, WantDetail: "name", Check: bad},
		{Name: "missing description", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(without("description")), WantStatus: 422, WantDetail: "description", Check: bad},
		{Name: "missing content", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(without("content")), WantStatus: 422, WantDetail: "content", Check: bad},
		{Name: "content not a string", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("content", 5)), WantStatus: 422, WantDetail: "must be a string", Check: bad},
		{Name: "unknown key", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("ref", "main")), WantStatus: 422, WantDetail: "unknown", Check: bad},
		{Name: "content over 64 KiB", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("content", strings.Repeat("x", 64<<10+1))), WantStatus: 422, WantDetail: "65536", Check: bad},
		{Name: "content over 64 KiB in bytes, not characters", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("content", strings.Repeat("é", 32<<10+1))), WantStatus: 422, WantDetail: "65536", Check: bad},
		{Name: "content with SKILL_EOF", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("content", "---\nname: one\n---\nSKILL_EOF\n")), WantStatus: 422, WantDetail: "SKILL_EOF", Check: bad},
		{Name: "description over 1024", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(with("description", strings.Repeat("d", 1025))), WantStatus: 422, WantDetail: "1024", Check: bad},
		{Name: "more than 20", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkills(21)...), WantStatus: 422, WantDetail: "20", Check: bad},
		{Name: "duplicate names", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("pdf"), agentSkill("pdf")), WantStatus: 422, WantDetail: "duplicate", Check: bad},
		{Name: "inline and github with one name", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(agentSkill("pdf"), namedGitHub), WantStatus: 422, WantDetail: "duplicate", Check: bad},
		{Name: "two whole-repo entries of one source", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(wholeRepo, wholeRepo), WantStatus: 422, WantDetail: "duplicate", Check: bad},
		{Name: "github source not owner/repo", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(map[string]any{"type": "github", "source": "skills"}), WantStatus: 422, WantDetail: "owner/repo", Check: bad},
		{Name: "skill type not github", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(map[string]any{"type": "gitlab", "source": "a/b"}), WantStatus: 422, WantDetail: "github", Check: bad},
		{Name: "github skill with content", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(map[string]any{"type": "github", "source": "a/b", "content": "x"}), WantStatus: 422, WantDetail: "unknown", Check: bad},
		{Name: "github name not matching the regex", Method: "POST", Path: "/agents", Token: tok, Body: skillsWith(map[string]any{"source": "a/b", "name": "Bad Name"}), WantStatus: 422, WantDetail: "must match", Check: bad},
	})
}

func TestAgentMCPServers(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	mcpWith := func(items ...any) map[string]any { return agentWith("mcp_servers", items) }
	echo := func(items ...any) func(*is.I, apitest.Response) { return agentWantField("mcp_servers", items) }
	full := []any{
		map[string]any{"name": "docs", "type": "url", "url": "https://mcp.example.com/sse", "headers": map[string]any{"X-Key": "k"}},
		map[string]any{"name": "fs", "type": "stdio", "command": "npx", "args": []any{"-y", "@mcp/fs"}, "env": map[string]any{"ROOT": "/workspace"}},
	}
	bad := agentWantValueError("mcp_servers")
	a.Run(t, "", []apitest.Scenario{
		{Name: "url entry without type gets type url", Method: "POST", Path: "/agents", Token: tok,
			Body: mcpWith(map[string]any{"name": "s1", "url": "https://a.com/mcp"}), WantStatus: 201,
			Check: echo(map[string]any{"name": "s1", "type": "url", "url": "https://a.com/mcp"})},
		{Name: "command entry without type gets type stdio", Method: "POST", Path: "/agents", Token: tok,
			Body: mcpWith(map[string]any{"name": "s2", "command": "npx", "args": []any{"x"}}), WantStatus: 201,
			Check: echo(map[string]any{"name": "s2", "type": "stdio", "command": "npx", "args": []any{"x"}})},
		{Name: "typed entries echoed", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(full...), WantStatus: 201, Check: echo(full...)},
		{Name: "20 servers", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(agentMCPs(20)...), WantStatus: 201},

		{Name: "entry not an object", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith("s1"), WantStatus: 422, WantDetail: "must be an object", Check: bad},
		{Name: "entry without name", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"url": "https://a.com/mcp"}), WantStatus: 422, WantDetail: "name", Check: bad},
		{Name: "duplicate names", Method: "POST", Path: "/agents", Token: tok,
			Body: mcpWith(map[string]any{"name": "s1", "url": "https://a.com/1"}, map[string]any{"name": "s1", "url": "https://a.com/2"}), WantStatus: 422, WantDetail: "duplicate", Check: bad},
		{Name: "more than 20", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(agentMCPs(21)...), WantStatus: 422, WantDetail: "20", Check: bad},
		{Name: "url type without url", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1", "type": "url"}), WantStatus: 422, WantDetail: "url", Check: bad},
		{Name: "neither url nor command", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1"}), WantStatus: 422, WantDetail: "url", Check: bad},
		{Name: "stdio type without command", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1", "type": "stdio", "args": []any{"x"}}), WantStatus: 422, WantDetail: "command", Check: bad},
		{Name: "unknown type", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1", "type": "sse", "url": "https://a.com"}), WantStatus: 422, WantDetail: "unknown type", Check: bad},
		{Name: "headers not strings", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1", "url": "https://a.com", "headers": map[string]any{"X": 1}}), WantStatus: 422, Check: bad},
		{Name: "args not a list of strings", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1", "command": "npx", "args": "x"}), WantStatus: 422, Check: bad},
		{Name: "env not strings", Method: "POST", Path: "/agents", Token: tok, Body: mcpWith(map[string]any{"name": "s1", "command": "npx", "env": map[string]any{"A": true}}), WantStatus: 422, Check: bad},
	})
}

// TestAgentBodyLimit: bodies up to 4 MiB are read, so the largest agent the
// skill rules allow fits; anything over 4 MiB is a 413 JSON error.
func TestAgentBodyLimit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")

	skills := make([]any, 20)
	for i := range skills {
		s := agentSkill(fmt.Sprintf("big-%d", i))
		s["content"] = strings.Repeat(string(rune('a'+i)), 64<<10)
		skills[i] = s
	}
	r := a.Do("POST", "/agents", tok, agentWith("skills", skills))
	is.Equal(r.Status, http.StatusCreated)         // 20 skills of 64 KiB (about 1.3 MiB) are accepted
	is.Equal(r.Obj()["skills"], agentJSON(skills)) // and echoed exactly

	huge := `{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude","system":"` + strings.Repeat("s", 4<<20) + `"}`
	r = a.Do("POST", "/agents", tok, huge)
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)                        // over 4 MiB is 413
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // the 413 is JSON
	is.True(r.Detail() != "")                                                   // with a detail
}

func TestAgentList(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	alice, bob := a.Token("alice"), a.Token("bob")

	r := a.Do("GET", "/agents", alice, nil)
	is.Equal(r.Status, http.StatusOK)                 // list is 200
	is.Equal(r.Body, map[string]any{"data": []any{}}) // an empty list is {"data": []}

	first := a.MustCreate("/agents", alice, agentWith("name", "first"))["id"].(string)
	second := a.MustCreate("/agents", alice, agentWith("name", "second"))["id"].(string)
	third := a.MustCreate("/agents", alice, agentWith("name", "third"))["id"].(string)
	bobs := a.MustCreate("/agents", bob, agentWith("name", "bobs"))["id"].(string)

	r = a.Do("GET", "/agents", alice, nil)
	is.Equal(agentIDs(r), []string{third, second, first}) // newest first, only the caller's
	item, _ := r.Data()[0].(map[string]any)
	is.Equal(item["name"], "third")         // list items are full agents
	is.Equal(item["provider"], "anthropic") // with provider
	is.Equal(item["runtime"], "claude")     // and runtime

	ar := a.Do("POST", "/agents/"+second+"/archive", alice, nil)
	is.Equal(ar.Status, http.StatusOK) // archive
	r = a.Do("GET", "/agents", alice, nil)
	is.Equal(agentIDs(r), []string{third, first}) // archived agents are not listed

	r = a.Do("GET", "/agents", bob, nil)
	is.Equal(agentIDs(r), []string{bobs}) // another user sees only their own
}

func TestAgentGet(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	created := a.MustCreate("/agents", tok, agentWith("name", "gettable"))
	id := created["id"].(string)
	a.Run(t, id, []apitest.Scenario{
		{Name: "by id", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(r.Obj(), created) }}, // GET returns the created agent
		{Name: "uppercase id", Method: "GET", Path: "/agents/" + strings.ToUpper(id), Token: tok, WantStatus: 200, Check: agentWantField("id", id)},
		{Name: "unknown id", Method: "GET", Path: "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b", Token: tok, WantStatus: 404, Check: agentWantExactDetail("Agent not found")},
		{Name: "non-UUID id", Method: "GET", Path: "/agents/not-a-uuid", Token: tok, WantStatus: 404},
		{Name: "id with a trailing character", Method: "GET", Path: "/agents/" + id + "0", Token: tok, WantStatus: 404},
		{Name: "archive", Method: "POST", Path: "/agents/{id}/archive", Token: tok, WantStatus: 200},
		{Name: "archived still readable", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.True(agentTimeRE.MatchString(fmt.Sprint(r.Obj()["archived_at"]))) // archived_at set
				is.Equal(r.Obj()["name"], "gettable")                                // the agent's fields
			}},
	})
}

func TestAgentUpdate(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	created := a.MustCreate("/agents", tok, agentWith(
		"system", "be brief", "description", "helper", "metadata", map[string]any{"team": "platform"},
		"skills", []any{agentSkill("one")}, "mcp_servers", agentMCPs(1)))
	id := created["id"].(string)

	// unchanged checks that r holds the created agent apart from the keys
	// named in except.
	unchanged := func(except ...string) func(*is.I, apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			for k, v := range created {
				if !slices.Contains(except, k) {
					is.Equal(r.Obj()[k], v) // untouched fields unchanged
				}
			}
		}
	}
	noop := agentChecks(agentWantField("version", 1), unchanged())
	skill2 := agentSkill("two")
	a.Run(t, id, []apitest.Scenario{
		{Name: "invalid JSON", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: `{"version":`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "JSON array body", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: `[{"version":1}]`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "version missing", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"system": "x"}, WantStatus: 422, Check: agentWantLoc("missing", "version")},
		{Name: "version null", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": nil, "system": "x"}, WantStatus: 422, Check: agentWantLoc("int_type", "version")},
		{Name: "version not an integer", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": "one"}, WantStatus: 422, Check: agentWantLoc("int_parsing", "version")},
		{Name: "version fractional", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1.5}, WantStatus: 422, Check: agentWantLoc("int_from_float", "version")},
		{Name: "name is a number", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "name": 123}, WantStatus: 422, Check: agentWantLoc("string_type", "name")},
		{Name: "name longer than 200", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "name": strings.Repeat("n", 201)}, WantStatus: 422, Check: agentWantLoc("string_too_long", "name")},
		{Name: "wrong type before stale version", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 7, "system": 5}, WantStatus: 422, Check: agentWantLoc("string_type", "system")},
		{Name: "metadata value not a string", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "metadata": map[string]any{"a": 1}}, WantStatus: 422, Check: agentWantLoc("string_type", "metadata", "a")},
		{Name: "invalid skills", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "skills": []any{agentSkill("x"), agentSkill("x")}}, WantStatus: 422, WantDetail: "duplicate", Check: agentWantValueError("skills")},
		{Name: "invalid mcp_servers", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "mcp_servers": []any{"s1"}}, WantStatus: 422, WantDetail: "must be an object", Check: agentWantValueError("mcp_servers")},
		{Name: "blank model", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "model": "  "}, WantStatus: 422, WantDetail: "Model must be a non-empty string"},
		{Name: "stale version", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 5, "system": "x"}, WantStatus: 409, Check: agentWantExactDetail("Version mismatch: expected 1, got 5")},
		{Name: "unknown runtime", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "runtime": "nope"}, WantStatus: 400, WantDetail: "Unknown runtime: nope"},
		{Name: "runtime cannot serve the model", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "runtime": "codex"}, WantStatus: 422, WantDetail: "cannot serve"},
		{Name: "model the runtime cannot serve", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "model": "openai/gpt-4.1"}, WantStatus: 422, WantDetail: "cannot serve"},
		{Name: "unknown model", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "model": "foo/bar"}, WantStatus: 422, WantDetail: "Unknown model"},
		{Name: "unknown provider", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "provider": "foo"}, WantStatus: 422, WantDetail: "Unknown provider"},
		{Name: "provider alone re-checks the current model", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "provider": "openai"}, WantStatus: 422, WantDetail: "does not match provider"},
		{Name: "failed updates changed nothing", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200, Check: noop},

		{Name: "no-op: only version", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1}, WantStatus: 200, Check: noop},
		{Name: "no-op: same values", Method: "PUT", Path: "/agents/{id}", Token: tok,
			Body: map[string]any{"version": 1, "name": "hello", "system": "be brief", "description": "helper", "model": agentModel, "runtime": "claude",
				"provider": "", "metadata": map[string]any{"team": "platform"}, "skills": []any{agentSkill("one")}, "mcp_servers": agentMCPs(1)},
			WantStatus: 200, Check: noop},
		{Name: "no-op: null fields", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "name": nil, "system": nil, "skills": nil, "metadata": nil}, WantStatus: 200, Check: noop},
		{Name: "no-op: numeric string version", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": "1", "system": "be brief"}, WantStatus: 200, Check: noop},
		{Name: "no-op wrote no version", Method: "GET", Path: "/agents/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(len(r.Data()), 1) }}, // still only the version-1 snapshot

		{Name: "system change bumps to 2", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "system": "be thorough"}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 2), agentWantField("system", "be thorough"), unchanged("system", "version", "updated_at"),
				func(is *is.I, r apitest.Response) {
					is.True(r.Obj()["updated_at"] != created["updated_at"])                        // updated_at moves on a change
					is.True(fmt.Sprint(r.Obj()["updated_at"]) > fmt.Sprint(created["updated_at"])) // forward
				})},
		{Name: "old version now stale", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "system": "x"}, WantStatus: 409, Check: agentWantExactDetail("Version mismatch: expected 2, got 1")},
		{Name: "versions v2 then v1", Method: "GET", Path: "/agents/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 2) // two snapshots
				v2, _ := r.Data()[0].(map[string]any)
				v1, _ := r.Data()[1].(map[string]any)
				is.Equal(v2["version"], 2.0)          // newest first
				is.Equal(v2["system"], "be thorough") // v2 snapshot holds the new system
				is.Equal(v1["version"], 1.0)          // then v1
				is.Equal(v1["system"], "be brief")    // v1 snapshot keeps the old system
			}},
		{Name: "empty system clears it", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "system": ""}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 3), agentWantField("system", nil))},
		{Name: "skills replaced", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 3, "skills": []any{skill2}}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 4), agentWantField("skills", []any{skill2}))},
		{Name: "empty skills clear them", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 4, "skills": []any{}}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 5), agentWantField("skills", []any{}))},
		{Name: "provider era switch derives the runtime", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 5, "provider": "openai", "model": "gpt-4.1"}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 6), agentWantField("runtime", "codex"), agentWantField("provider", "openai"), agentWantField("model", "openai/gpt-4.1"))},
		{Name: "runtime era switch", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 6, "runtime": "opencode", "model": "google/gemini-2.5-pro"}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 7), agentWantField("runtime", "opencode"), agentWantField("provider", "google"), agentWantField("model", "google/gemini-2.5-pro"))},
		{Name: "name and description change", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 7, "name": "renamed", "description": ""}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 8), agentWantField("name", "renamed"), agentWantField("description", nil), agentWantField("metadata", map[string]any{"team": "platform"}))},
	})
}

// TestAgentUpdateNotFoundAndArchived covers PUT's lookups and state checks
// and their order after body, schema and catalogue checks.
func TestAgentUpdateNotFoundAndArchived(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/agents", tok, agentWith())["id"].(string)
	unknown := "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"
	a.Run(t, id, []apitest.Scenario{
		{Name: "unknown id", Method: "PUT", Path: unknown, Token: tok, Body: map[string]any{"version": 1, "system": "x"}, WantStatus: 404, Check: agentWantExactDetail("Agent not found")},
		{Name: "non-UUID id", Method: "PUT", Path: "/agents/nope", Token: tok, Body: map[string]any{"version": 1, "system": "x"}, WantStatus: 404},
		{Name: "unknown id, invalid JSON", Method: "PUT", Path: unknown, Token: tok, Body: `{`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "unknown id, version missing", Method: "PUT", Path: unknown, Token: tok, Body: map[string]any{"system": "x"}, WantStatus: 422, Check: agentWantLoc("missing", "version")},
		{Name: "unknown id, unknown runtime", Method: "PUT", Path: unknown, Token: tok, Body: map[string]any{"version": 1, "runtime": "nope"}, WantStatus: 400, WantDetail: "Unknown runtime"},
		{Name: "trailing garbage after the object", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: `{"version":1,"system":"x"} x`, WantStatus: 400, Check: agentWantExactDetail("Invalid JSON")},
		{Name: "archive", Method: "POST", Path: "/agents/{id}/archive", Token: tok, WantStatus: 200},
		{Name: "update archived", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "system": "x"}, WantStatus: 409, Check: agentWantExactDetail("Cannot update an archived agent")},
		{Name: "update archived with stale version", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 9, "system": "x"}, WantStatus: 409, Check: agentWantExactDetail("Cannot update an archived agent")},
		{Name: "archived agent unchanged", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 1), agentWantField("system", nil))},
	})
}

func TestAgentMetadataMerge(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	// Create stores metadata as sent, "" values included.
	id := a.MustCreate("/agents", tok, agentWith("metadata", map[string]any{"team": "platform", "blank": ""}))["id"].(string)
	meta := func(version int, want map[string]any) func(*is.I, apitest.Response) {
		return agentChecks(agentWantField("version", version), agentWantField("metadata", want))
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "create keeps empty values", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200, Check: meta(1, map[string]any{"team": "platform", "blank": ""})},
		{Name: "new keys are merged in", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "metadata": map[string]any{"env": "staging", "new_key": "val"}}, WantStatus: 200,
			Check: meta(2, map[string]any{"team": "platform", "blank": "", "env": "staging", "new_key": "val"})},
		{Name: "empty value deletes a key", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "metadata": map[string]any{"team": "", "blank": ""}}, WantStatus: 200,
			Check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{Name: "deleting an absent key is a no-op", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 3, "metadata": map[string]any{"ghost": ""}}, WantStatus: 200,
			Check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{Name: "same values are a no-op", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 3, "metadata": map[string]any{"env": "staging"}}, WantStatus: 200,
			Check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{Name: "empty object is a no-op", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 3, "metadata": map[string]any{}}, WantStatus: 200,
			Check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{Name: "overwrite", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 3, "metadata": map[string]any{"env": "prod"}}, WantStatus: 200,
			Check: meta(4, map[string]any{"env": "prod", "new_key": "val"})},
	})

	// The e2e suite's example.
	e2e := a.MustCreate("/agents", tok, agentWith("metadata", map[string]any{"key1": "val1", "key2": "val2"}))["id"].(string)
	a.Run(t, e2e, []apitest.Scenario{
		{Name: "e2e merge", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "metadata": map[string]any{"key1": "updated", "key2": "", "key3": "new"}}, WantStatus: 200,
			Check: meta(2, map[string]any{"key1": "updated", "key3": "new"})},
		{Name: "e2e merge snapshot", Method: "GET", Path: "/agents/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				v2, _ := r.Data()[0].(map[string]any)
				is.Equal(v2["metadata"], map[string]any{"key1": "updated", "key3": "new"}) // the v2 snapshot holds the merged metadata
			}},
	})
}

func TestAgentEnvironmentID(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok, bob := a.Token("alice"), a.Token("bob")
	envA := a.MustCreate("/environments", tok, map[string]any{"name": "env-a"})["id"].(string)
	envB := a.MustCreate("/environments", tok, map[string]any{"name": "env-b"})["id"].(string)
	archived := a.MustCreate("/environments", tok, map[string]any{"name": "env-old"})["id"].(string)
	if r := a.Do("POST", "/environments/"+archived+"/archive", tok, nil); r.Status != http.StatusOK {
		t.Fatalf("archive environment: %d %s", r.Status, r.Raw)
	}
	bobsEnv := a.MustCreate("/environments", bob, map[string]any{"name": "env-bob"})["id"].(string)
	unknown := "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"

	a.Run(t, "", []apitest.Scenario{
		{Name: "create with environment", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", envA), WantStatus: 201, Check: agentWantField("environment_id", envA)},
		{Name: "create with uppercase environment id", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", strings.ToUpper(envA)), WantStatus: 201, Check: agentWantField("environment_id", envA)},
		{Name: "create with empty environment id", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", ""), WantStatus: 201, Check: agentWantField("environment_id", nil)},
		{Name: "create with null environment id", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", nil), WantStatus: 201, Check: agentWantField("environment_id", nil)},
		{Name: "create with unknown environment", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", unknown), WantStatus: 404, Check: agentWantExactDetail("Environment not found")},
		{Name: "create with non-UUID environment", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", "env-a"), WantStatus: 404, Check: agentWantExactDetail("Environment not found")},
		{Name: "create with another user's environment", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", bobsEnv), WantStatus: 404, Check: agentWantExactDetail("Environment not found")},
		{Name: "create with archived environment", Method: "POST", Path: "/agents", Token: tok, Body: agentWith("environment_id", archived), WantStatus: 409, Check: agentWantExactDetail("Cannot assign an archived environment to an agent")},
	})

	id := a.MustCreate("/agents", tok, agentWith("environment_id", envA))["id"].(string)
	a.Run(t, id, []apitest.Scenario{
		{Name: "absent environment_id leaves it", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "system": "s"}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 2), agentWantField("environment_id", envA))},
		{Name: "same environment is a no-op", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "environment_id": envA}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 2), agentWantField("environment_id", envA))},
		{Name: "unknown environment", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "environment_id": unknown}, WantStatus: 404, Check: agentWantExactDetail("Environment not found")},
		{Name: "another user's environment", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "environment_id": bobsEnv}, WantStatus: 404, Check: agentWantExactDetail("Environment not found")},
		{Name: "archived environment", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "environment_id": archived}, WantStatus: 409, Check: agentWantExactDetail("Cannot assign an archived environment to an agent")},
		{Name: "switch environment", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "environment_id": envB}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 3), agentWantField("environment_id", envB))},
		{Name: "explicit null detaches", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 3, "environment_id": nil}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 4), agentWantField("environment_id", nil))},
		{Name: "null again is a no-op", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 4, "environment_id": nil}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 4), agentWantField("environment_id", nil))},
		{Name: "snapshots carry the environment", Method: "GET", Path: "/agents/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				var envs []any
				for _, v := range r.Data() {
					envs = append(envs, v.(map[string]any)["environment_id"])
				}
				is.Equal(envs, []any{nil, envB, envA, envA}) // v4 detached, v3 env-b, v2 and v1 env-a
			}},
	})
}

func TestAgentArchive(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	created := a.MustCreate("/agents", tok, agentWith())
	id := created["id"].(string)
	a.Run(t, id, []apitest.Scenario{
		{Name: "archive", Method: "POST", Path: "/agents/{id}/archive", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				got := r.Obj()
				is.Equal(got["id"], id)                                                    // the archived agent is returned
				is.True(agentTimeRE.MatchString(fmt.Sprint(got["archived_at"])))           // archived_at set
				is.Equal(got["version"], 1.0)                                              // archiving does not bump the version
				is.True(fmt.Sprint(got["updated_at"]) > fmt.Sprint(created["updated_at"])) // archiving bumps updated_at
			}},
		{Name: "archive again", Method: "POST", Path: "/agents/{id}/archive", Token: tok, WantStatus: 409, Check: agentWantExactDetail("Agent is already archived")},
		{Name: "still readable", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.True(r.Obj()["archived_at"] != nil) }}, // GET shows archived_at
		{Name: "no snapshot written", Method: "GET", Path: "/agents/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(len(r.Data()), 1) }}, // archive writes no version
		{Name: "not listed", Method: "GET", Path: "/agents", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(len(r.Data()), 0) }}, // archived agents are not listed
		{Name: "archive unknown", Method: "POST", Path: "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b/archive", Token: tok, WantStatus: 404, Check: agentWantExactDetail("Agent not found")},
		{Name: "archive non-UUID", Method: "POST", Path: "/agents/xyz/archive", Token: tok, WantStatus: 404},
	})
}

func TestAgentVersions(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/agents", tok, agentWith())["id"].(string)
	s1 := map[string]any{"name": "s1", "url": "https://a.com/mcp"}
	s1Typed := map[string]any{"name": "s1", "type": "url", "url": "https://a.com/mcp"}
	a.Run(t, id, []apitest.Scenario{
		{Name: "updating mcp_servers bumps the version", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 1, "mcp_servers": []any{s1}}, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 2), agentWantField("mcp_servers", []any{s1Typed}))},
		{Name: "the same entry again is a no-op", Method: "PUT", Path: "/agents/{id}", Token: tok, Body: map[string]any{"version": 2, "mcp_servers": []any{s1}}, WantStatus: 200,
			Check: agentWantField("version", 2)},
		{Name: "newest first", Method: "GET", Path: "/agents/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 2) // v1 and v2
				v2, _ := r.Data()[0].(map[string]any)
				v1, _ := r.Data()[1].(map[string]any)
				is.Equal(v2["version"], 2.0)                           // v2 first
				is.Equal(v2["mcp_servers"], agentJSON([]any{s1Typed})) // v2 has the new entry
				is.Equal(v1["version"], 1.0)                           // then v1
				is.Equal(v1["mcp_servers"], []any{})                   // v1 had none
				is.Equal(agentKeys(v2), []string{                      // the version shape: no archived_at, no updated_at
					"created_at", "description", "environment_id", "id", "mcp_servers", "metadata",
					"model", "name", "provider", "runtime", "skills", "system", "type", "version",
				})
				is.Equal(v2["id"], id)                                         // a version's id is the agent's id
				is.Equal(v2["type"], "agent")                                  // type agent
				is.True(agentTimeRE.MatchString(fmt.Sprint(v2["created_at"]))) // created_at in the contract's format
			}},
		{Name: "unknown agent", Method: "GET", Path: "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b/versions", Token: tok, WantStatus: 404, Check: agentWantExactDetail("Agent not found")},
		{Name: "non-UUID agent", Method: "GET", Path: "/agents/v1/versions", Token: tok, WantStatus: 404},
	})
}

func TestAgentMethodNotAllowed(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/agents", tok, agentWith())["id"].(string)
	allow := func(methods ...string) func(*is.I, apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			is.Equal(r.Body, map[string]any{"detail": "Method not allowed"}) // exactly {"detail": "Method not allowed"}
			for _, m := range methods {
				is.True(strings.Contains(r.Header.Get("Allow"), m)) // Allow names the route's methods
			}
		}
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "PATCH /agents without auth", Method: "PATCH", Path: "/agents", Token: "", Body: map[string]any{}, WantStatus: 405, Check: allow("GET", "POST")},
		{Name: "PATCH /agents", Method: "PATCH", Path: "/agents", Token: tok, Body: map[string]any{}, WantStatus: 405, Check: allow("GET", "POST")},
		{Name: "PUT /agents", Method: "PUT", Path: "/agents", Token: tok, Body: map[string]any{}, WantStatus: 405, Check: allow("GET", "POST")},
		{Name: "DELETE /agents/{id} without auth", Method: "DELETE", Path: "/agents/{id}", Token: "", WantStatus: 405, Check: allow("GET", "PUT")},
		{Name: "DELETE /agents/{id}", Method: "DELETE", Path: "/agents/{id}", Token: tok, WantStatus: 405, Check: allow("GET", "PUT")},
		{Name: "POST /agents/{id}", Method: "POST", Path: "/agents/{id}", Token: tok, Body: map[string]any{}, WantStatus: 405, Check: allow("GET", "PUT")},
		{Name: "GET /agents/{id}/archive", Method: "GET", Path: "/agents/{id}/archive", Token: "", WantStatus: 405, Check: allow("POST")},
		{Name: "POST /agents/{id}/versions", Method: "POST", Path: "/agents/{id}/versions", Token: "", WantStatus: 405, Check: allow("GET")},
		{Name: "agent still there", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200, Check: agentWantField("version", 1)},
		{Name: "trailing slash is another path", Method: "GET", Path: "/agents/", Token: tok, WantStatus: 404},
		{Name: "unknown sub-path", Method: "GET", Path: "/agents/{id}/tools", Token: tok, WantStatus: 404},
	})
}

func TestAgentAuth(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/agents", tok, agentWith())["id"].(string)
	var rows []apitest.Scenario
	for _, rt := range []struct{ method, path string }{
		{"POST", "/agents"}, {"GET", "/agents"}, {"GET", "/agents/{id}"}, {"PUT", "/agents/{id}"},
		{"POST", "/agents/{id}/archive"}, {"GET", "/agents/{id}/versions"},
	} {
		var body any
		if rt.method != "GET" {
			body = map[string]any{"version": 1, "name": "x", "model": agentModel, "runtime": "claude"}
		}
		rows = append(rows,
			apitest.Scenario{Name: rt.method + " " + rt.path + " without token", Method: rt.method, Path: rt.path, Body: body, WantStatus: 401},
			apitest.Scenario{Name: rt.method + " " + rt.path + " with a bad token", Method: rt.method, Path: rt.path, Token: "aod_invalid_key", Body: body, WantStatus: 401})
	}
	rows = append(rows, apitest.Scenario{Name: "nothing changed", Method: "GET", Path: "/agents/{id}", Token: tok, WantStatus: 200,
		Check: agentChecks(agentWantField("version", 1), agentWantField("archived_at", nil))})
	a.Run(t, id, rows)
}

// TestAgentOwnership: another user's agent is indistinguishable from a
// missing one.
func TestAgentOwnership(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	alice, bob := a.Token("alice"), a.Token("bob")
	id := a.MustCreate("/agents", alice, agentWith("system", "mine"))["id"].(string)
	notFound := agentWantExactDetail("Agent not found")
	a.Run(t, id, []apitest.Scenario{
		{Name: "GET", Method: "GET", Path: "/agents/{id}", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "PUT", Method: "PUT", Path: "/agents/{id}", Token: bob, Body: map[string]any{"version": 1, "system": "theirs"}, WantStatus: 404, Check: notFound},
		{Name: "archive", Method: "POST", Path: "/agents/{id}/archive", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "versions", Method: "GET", Path: "/agents/{id}/versions", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "list", Method: "GET", Path: "/agents", Token: bob, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(len(r.Data()), 0) }}, // another user's agents are not listed
		{Name: "owner's agent untouched", Method: "GET", Path: "/agents/{id}", Token: alice, WantStatus: 200,
			Check: agentChecks(agentWantField("version", 1), agentWantField("system", "mine"), agentWantField("archived_at", nil))},
		{Name: "owner lists it", Method: "GET", Path: "/agents", Token: alice, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) { is.Equal(agentIDs(r), []string{id}) }}, // the owner sees the agent
	})
}

// TestAgentUpdateConcurrent: optimistic concurrency holds under racing
// writers; exactly one PUT at a version wins, the others see the mismatch.
func TestAgentUpdateConcurrent(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/agents", tok, agentWith())["id"].(string)

	const writers = 8
	type result struct {
		status int
		detail string
		err    error
	}
	results := make(chan result, writers)
	for i := range writers {
		go func() {
			body := fmt.Sprintf(`{"version": 1, "system": "writer %d"}`, i)
			req, err := http.NewRequest("PUT", a.URL+"/agents/"+id, strings.NewReader(body))
			if err != nil {
				results <- result{err: err}
				return
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := a.HTTP.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer res.Body.Close()
			var d struct {
				Detail string `json:"detail"`
			}
			json.NewDecoder(res.Body).Decode(&d)
			results <- result{status: res.StatusCode, detail: d.Detail}
		}()
	}
	won := 0
	for range writers {
		r := <-results
		is.NoErr(r.err) // the request went through
		switch r.status {
		case http.StatusOK:
			won++
		case http.StatusConflict:
			is.Equal(r.detail, "Version mismatch: expected 2, got 1") // a loser sees the winner's version
		default:
			is.Fail() // only 200 and 409 are possible
		}
	}
	is.Equal(won, 1) // exactly one writer wins version 1

	v := a.Do("GET", "/agents/"+id+"/versions", tok, nil)
	is.Equal(len(v.Data()), 2) // one new snapshot, not one per writer
}
