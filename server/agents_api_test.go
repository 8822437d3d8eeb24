package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

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
func agentFieldError(r response, loc ...any) map[string]any {
	items, _ := r.obj()["detail"].([]any)
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
func agentWantLoc(typ string, loc ...any) func(*is.I, response) {
	return func(is *is.I, r response) {
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
func agentWantValueError(field string) func(*is.I, response) {
	return func(is *is.I, r response) {
		e := agentFieldError(r, field)
		is.True(e != nil)                  // the 422 list detail has an item with loc [field]
		is.Equal(e["type"], "value_error") // custom validators report value_error
		msg, _ := e["msg"].(string)
		is.True(strings.HasPrefix(msg, "Value error, ")) // pydantic's custom-validator wording
	}
}

// agentWantField checks one field of the returned object.
func agentWantField(key string, want any) func(*is.I, response) {
	return func(is *is.I, r response) {
		is.Equal(r.obj()[key], agentJSON(want)) // the response field
	}
}

// agentChecks runs several checks in order.
func agentChecks(checks ...func(*is.I, response)) func(*is.I, response) {
	return func(is *is.I, r response) {
		for _, c := range checks {
			c(is, r)
		}
	}
}

// agentWantExactDetail checks the detail string exactly.
func agentWantExactDetail(want string) func(*is.I, response) {
	return func(is *is.I, r response) {
		is.Equal(r.detail(), want) // the exact detail string
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
func agentIDs(r response) []string {
	var ids []string
	for _, it := range r.data() {
		m, _ := it.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

func TestAgentCreateFull(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")

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
	r := a.do("POST", "/agents", tok, body)
	is.Equal(r.Status, http.StatusCreated)                                      // create is 201
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
	got := r.obj()
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

	g := a.do("GET", "/agents/"+id, tok, nil)
	is.Equal(g.Status, http.StatusOK) // the created agent is readable
	is.Equal(g.Body, r.Body)          // GET returns what create returned

	v := a.do("GET", "/agents/"+id+"/versions", tok, nil)
	is.Equal(v.Status, http.StatusOK) // versions of a new agent
	is.Equal(len(v.data()), 1)        // create writes exactly the version-1 snapshot
	snap, _ := v.data()[0].(map[string]any)
	is.Equal(snap["version"], 1.0) // the snapshot is version 1
	for _, k := range []string{"id", "type", "name", "description", "system", "model", "runtime", "provider", "environment_id", "skills", "mcp_servers", "metadata"} {
		is.Equal(snap[k], got[k]) // the snapshot holds the agent's fields
	}
}

func TestAgentCreateMinimalShape(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")

	// Legacy and unknown keys are ignored, never echoed.
	r := a.do("POST", "/agents", tok, agentWith("tools", []any{"bash"}, "colour", "blue"))
	is.Equal(r.Status, http.StatusCreated) // minimal create is 201
	got := r.obj()
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
	a := newAPI(t)
	tok := a.token("alice")
	unknownEnv := "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"
	runtimeOf := func(runtime, provider, model string) func(*is.I, response) {
		return agentChecks(agentWantField("runtime", runtime), agentWantField("provider", provider), agentWantField("model", model))
	}
	a.run(t, "", []scenario{
		// 400: not a JSON object.
		{name: "invalid JSON", method: "POST", path: "/agents", token: tok, body: `{"name": "x",`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "empty body", method: "POST", path: "/agents", token: tok, body: ``, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "JSON array body", method: "POST", path: "/agents", token: tok, body: `[{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude"}]`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "JSON string body", method: "POST", path: "/agents", token: tok, body: `"agent"`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "JSON null body", method: "POST", path: "/agents", token: tok, body: `null`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "trailing data after the object", method: "POST", path: "/agents", token: tok, body: `{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude"} {}`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "trailing garbage after the object", method: "POST", path: "/agents", token: tok, body: `{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude"} x`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "rejected bodies stored nothing", method: "GET", path: "/agents", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(len(r.data()), 0) }}, // no rejected create stored an agent

		// 422: schema, with the pydantic list detail.
		{name: "only name: model missing", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "x"}, wantStatus: 422,
			check: agentChecks(agentWantLoc("missing", "model"), func(is *is.I, r response) {
				e := agentFieldError(r, "model")
				is.Equal(e["msg"], "Field required")              // pydantic's missing wording
				is.Equal(e["input"], map[string]any{"name": "x"}) // a missing item's input is the whole body
			})},
		{name: "empty object: name and model missing", method: "POST", path: "/agents", token: tok, body: map[string]any{}, wantStatus: 422,
			check: agentChecks(agentWantLoc("missing", "name"), agentWantLoc("missing", "model"))},
		{name: "name is a number", method: "POST", path: "/agents", token: tok, body: agentWith("name", 123), wantStatus: 422, check: agentWantLoc("string_type", "name")},
		{name: "name is null", method: "POST", path: "/agents", token: tok, body: agentWith("name", nil), wantStatus: 422, check: agentWantLoc("string_type", "name")},
		{name: "name longer than 200", method: "POST", path: "/agents", token: tok, body: agentWith("name", strings.Repeat("n", 201)), wantStatus: 422, check: agentWantLoc("string_too_long", "name")},
		{name: "name of 200 accepted", method: "POST", path: "/agents", token: tok, body: agentWith("name", strings.Repeat("n", 200)), wantStatus: 201},
		{name: "empty name accepted", method: "POST", path: "/agents", token: tok, body: agentWith("name", ""), wantStatus: 201, check: agentWantField("name", "")},
		{name: "model is a number", method: "POST", path: "/agents", token: tok, body: agentWith("model", 123), wantStatus: 422, check: agentWantLoc("string_type", "model")},
		{name: "runtime is a number", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", 5), wantStatus: 422, check: agentWantLoc("string_type", "runtime")},
		{name: "provider is a number", method: "POST", path: "/agents", token: tok, body: agentWith("provider", 5), wantStatus: 422, check: agentWantLoc("string_type", "provider")},
		{name: "system is a number", method: "POST", path: "/agents", token: tok, body: agentWith("system", 5), wantStatus: 422, check: agentWantLoc("string_type", "system")},
		{name: "description is a boolean", method: "POST", path: "/agents", token: tok, body: agentWith("description", true), wantStatus: 422, check: agentWantLoc("string_type", "description")},
		{name: "environment_id is a number", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", 5), wantStatus: 422, check: agentWantLoc("string_type", "environment_id")},
		{name: "skills is not a list", method: "POST", path: "/agents", token: tok, body: agentWith("skills", "pdf"), wantStatus: 422, check: agentWantLoc("list_type", "skills")},
		{name: "mcp_servers is not a list", method: "POST", path: "/agents", token: tok, body: agentWith("mcp_servers", map[string]any{"name": "s1"}), wantStatus: 422, check: agentWantLoc("list_type", "mcp_servers")},
		{name: "metadata is not an object", method: "POST", path: "/agents", token: tok, body: agentWith("metadata", []any{"a"}), wantStatus: 422, check: agentWantLoc("dict_type", "metadata")},
		{name: "metadata value is not a string", method: "POST", path: "/agents", token: tok, body: agentWith("metadata", map[string]any{"a": "x", "b": 1}), wantStatus: 422, check: agentWantLoc("string_type", "metadata", "b")},
		{name: "schema error before unknown runtime", method: "POST", path: "/agents", token: tok, body: agentWith("name", 123, "runtime", "nope"), wantStatus: 422, check: agentWantLoc("string_type", "name")},

		// Runtime era catalogue.
		{name: "unknown runtime is 400", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "nope"), wantStatus: 400, wantDetail: "Unknown runtime: nope. Must be one of: ["},
		{name: "unknown runtime before environment lookup", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "nope", "environment_id", unknownEnv), wantStatus: 400, wantDetail: "Unknown runtime"},
		{name: "bare model in runtime era", method: "POST", path: "/agents", token: tok, body: agentWith("model", "claude-sonnet-4-6"), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "unknown provider prefix", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "opencode", "model", "mistral/large"), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "empty model id", method: "POST", path: "/agents", token: tok, body: agentWith("model", "anthropic/"), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "model id starting with a hyphen", method: "POST", path: "/agents", token: tok, body: agentWith("model", "anthropic/-sonnet"), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "model id with a space", method: "POST", path: "/agents", token: tok, body: agentWith("model", "anthropic/claude sonnet"), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "local model other than shell", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "shell", "model", "local/bash"), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "bad model before environment lookup", method: "POST", path: "/agents", token: tok, body: agentWith("model", "nope", "environment_id", unknownEnv), wantStatus: 422, wantDetail: "Unknown model"},
		{name: "claude cannot serve openai", method: "POST", path: "/agents", token: tok, body: agentWith("model", "openai/gpt-4.1"), wantStatus: 422,
			wantDetail: "Runtime claude cannot serve model openai/gpt-4.1: provider openai not in ["},
		{name: "codex cannot serve anthropic", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "codex"), wantStatus: 422, wantDetail: "cannot serve model"},
		{name: "gemini cannot serve openai", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "gemini", "model", "openai/o3"), wantStatus: 422, wantDetail: "cannot serve model"},
		{name: "shell cannot serve anthropic", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "shell"), wantStatus: 422, wantDetail: "cannot serve model"},
		{name: "claude cannot serve local/shell", method: "POST", path: "/agents", token: tok, body: agentWith("model", "local/shell"), wantStatus: 422, wantDetail: "cannot serve model"},
		{name: "shell runtime with local/shell", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "shell", "model", "local/shell"), wantStatus: 201, check: runtimeOf("shell", "local", "local/shell")},
		{name: "codex with openai", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "codex", "model", "openai/o4-mini"), wantStatus: 201, check: runtimeOf("codex", "openai", "openai/o4-mini")},
		{name: "gemini with google", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "gemini", "model", "google/gemini-2.5-flash"), wantStatus: 201, check: runtimeOf("gemini", "google", "google/gemini-2.5-flash")},
		{name: "opencode with google", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "opencode", "model", "google/gemini-2.5-pro"), wantStatus: 201, check: runtimeOf("opencode", "google", "google/gemini-2.5-pro")},
		{name: "opencode with openai", method: "POST", path: "/agents", token: tok, body: agentWith("runtime", "opencode", "model", "openai/gpt-4.1"), wantStatus: 201, check: runtimeOf("opencode", "openai", "openai/gpt-4.1")},
		{name: "no closed list of model ids", method: "POST", path: "/agents", token: tok, body: agentWith("model", "anthropic/claude-future-9.1:beta"), wantStatus: 201, check: runtimeOf("claude", "anthropic", "anthropic/claude-future-9.1:beta")},

		// Provider era: provider + bare model, runtime derived.
		{name: "provider anthropic and bare model", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": "claude-sonnet-4-6"}, wantStatus: 201, check: runtimeOf("claude", "anthropic", "anthropic/claude-sonnet-4-6")},
		{name: "provider openai derives codex", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "openai", "model": "gpt-4.1"}, wantStatus: 201, check: runtimeOf("codex", "openai", "openai/gpt-4.1")},
		{name: "provider google derives gemini", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "google", "model": "gemini-2.5-pro"}, wantStatus: 201, check: runtimeOf("gemini", "google", "google/gemini-2.5-pro")},
		{name: "provider local derives shell", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "local", "model": "shell"}, wantStatus: 201, check: runtimeOf("shell", "local", "local/shell")},
		{name: "matching prefix stripped", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": "anthropic/claude-haiku-4-5"}, wantStatus: 201, check: runtimeOf("claude", "anthropic", "anthropic/claude-haiku-4-5")},
		{name: "provider with explicit runtime", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "openai", "model": "gpt-4.1", "runtime": "opencode"}, wantStatus: 201, check: runtimeOf("opencode", "openai", "openai/gpt-4.1")},
		{name: "provider the runtime cannot serve", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "openai", "model": "gpt-4.1", "runtime": "claude"}, wantStatus: 422, wantDetail: "cannot serve model"},
		{name: "blank model", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": ""}, wantStatus: 422, wantDetail: "Model must be a non-empty string"},
		{name: "whitespace model", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": "   "}, wantStatus: 422, wantDetail: "Model must be a non-empty string"},
		{name: "prefix only model", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": "anthropic/"}, wantStatus: 422, wantDetail: "Model must be a non-empty string"},
		{name: "mismatched prefix", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": "openai/gpt-4o"}, wantStatus: 422,
			wantDetail: "Model provider prefix 'openai' does not match provider 'anthropic'"},
		{name: "unknown provider", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "foo", "model": "bar"}, wantStatus: 422, wantDetail: "Unknown provider: foo"},
		// api.md §1 (which wins over §5.2's "free-form"): the canonical model
		// must still have the <provider>/<model_id> form.
		{name: "provider era model not of the model_id form", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "anthropic", "model": "claude sonnet"}, wantStatus: 422, wantDetail: "Unknown model"},
		{name: "provider local with a model other than shell", method: "POST", path: "/agents", token: tok, body: map[string]any{"name": "p", "provider": "local", "model": "bash"}, wantStatus: 422, wantDetail: "Unknown model"},
	})
}

func TestAgentSkills(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	skillsWith := func(items ...any) map[string]any { return agentWith("skills", items) }
	echo := func(items ...any) func(*is.I, response) { return agentWantField("skills", items) }
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
	a.run(t, "", []scenario{
		{name: "inline skill echoed exactly", method: "POST", path: "/agents", token: tok, body: skillsWith(inline), wantStatus: 201, check: echo(inline)},
		{name: "github whole repo echoed without name", method: "POST", path: "/agents", token: tok, body: skillsWith(wholeRepo), wantStatus: 201, check: echo(wholeRepo)},
		{name: "github named skill echoed", method: "POST", path: "/agents", token: tok, body: skillsWith(namedGitHub), wantStatus: 201, check: echo(namedGitHub)},
		{name: "named and whole-repo entries of one source coexist", method: "POST", path: "/agents", token: tok, body: skillsWith(namedGitHub, wholeRepo, inline), wantStatus: 201, check: echo(namedGitHub, wholeRepo, inline)},
		{name: "name of 64 characters", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("a" + strings.Repeat("b", 63))), wantStatus: 201},
		{name: "content of exactly 64 KiB", method: "POST", path: "/agents", token: tok, body: skillsWith(with("content", strings.Repeat("x", 64<<10))), wantStatus: 201},
		{name: "description of 1024 characters", method: "POST", path: "/agents", token: tok, body: skillsWith(with("description", strings.Repeat("é", 1024))), wantStatus: 201},
		{name: "20 skills", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkills(20)...), wantStatus: 201},

		{name: "item not an object", method: "POST", path: "/agents", token: tok, body: skillsWith("pdf"), wantStatus: 422, wantDetail: "must be an object", check: bad},
		{name: "item null", method: "POST", path: "/agents", token: tok, body: skillsWith(nil), wantStatus: 422, wantDetail: "must be an object", check: bad},
		{name: "name with uppercase", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("Pdf")), wantStatus: 422, wantDetail: "must match", check: bad},
		{name: "name with leading hyphen", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("-pdf")), wantStatus: 422, wantDetail: "must match", check: bad},
		{name: "name with underscore", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("pdf_tools")), wantStatus: 422, wantDetail: "must match", check: bad},
		{name: "empty name", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("")), wantStatus: 422, wantDetail: "must match", check: bad},
		{name: "name of 65 characters", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("a" + strings.Repeat("b", 64))), wantStatus: 422, wantDetail: "must match", check: bad},
		{name: "missing name", method: "POST", path: "/agents", token: tok, body: skillsWith(without("name")), wantStatus: 422, wantDetail: "name", check: bad},
		{name: "missing description", method: "POST", path: "/agents", token: tok, body: skillsWith(without("description")), wantStatus: 422, wantDetail: "description", check: bad},
		{name: "missing content", method: "POST", path: "/agents", token: tok, body: skillsWith(without("content")), wantStatus: 422, wantDetail: "content", check: bad},
		{name: "content not a string", method: "POST", path: "/agents", token: tok, body: skillsWith(with("content", 5)), wantStatus: 422, wantDetail: "must be a string", check: bad},
		{name: "unknown key", method: "POST", path: "/agents", token: tok, body: skillsWith(with("ref", "main")), wantStatus: 422, wantDetail: "unknown", check: bad},
		{name: "content over 64 KiB", method: "POST", path: "/agents", token: tok, body: skillsWith(with("content", strings.Repeat("x", 64<<10+1))), wantStatus: 422, wantDetail: "65536", check: bad},
		{name: "content over 64 KiB in bytes, not characters", method: "POST", path: "/agents", token: tok, body: skillsWith(with("content", strings.Repeat("é", 32<<10+1))), wantStatus: 422, wantDetail: "65536", check: bad},
		{name: "content with SKILL_EOF", method: "POST", path: "/agents", token: tok, body: skillsWith(with("content", "---\nname: one\n---\nSKILL_EOF\n")), wantStatus: 422, wantDetail: "SKILL_EOF", check: bad},
		{name: "description over 1024", method: "POST", path: "/agents", token: tok, body: skillsWith(with("description", strings.Repeat("d", 1025))), wantStatus: 422, wantDetail: "1024", check: bad},
		{name: "more than 20", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkills(21)...), wantStatus: 422, wantDetail: "20", check: bad},
		{name: "duplicate names", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("pdf"), agentSkill("pdf")), wantStatus: 422, wantDetail: "duplicate", check: bad},
		{name: "inline and github with one name", method: "POST", path: "/agents", token: tok, body: skillsWith(agentSkill("pdf"), namedGitHub), wantStatus: 422, wantDetail: "duplicate", check: bad},
		{name: "two whole-repo entries of one source", method: "POST", path: "/agents", token: tok, body: skillsWith(wholeRepo, wholeRepo), wantStatus: 422, wantDetail: "duplicate", check: bad},
		{name: "github source not owner/repo", method: "POST", path: "/agents", token: tok, body: skillsWith(map[string]any{"type": "github", "source": "skills"}), wantStatus: 422, wantDetail: "owner/repo", check: bad},
		{name: "skill type not github", method: "POST", path: "/agents", token: tok, body: skillsWith(map[string]any{"type": "gitlab", "source": "a/b"}), wantStatus: 422, wantDetail: "github", check: bad},
		{name: "github skill with content", method: "POST", path: "/agents", token: tok, body: skillsWith(map[string]any{"type": "github", "source": "a/b", "content": "x"}), wantStatus: 422, wantDetail: "unknown", check: bad},
		{name: "github name not matching the regex", method: "POST", path: "/agents", token: tok, body: skillsWith(map[string]any{"source": "a/b", "name": "Bad Name"}), wantStatus: 422, wantDetail: "must match", check: bad},
	})
}

func TestAgentMCPServers(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	mcpWith := func(items ...any) map[string]any { return agentWith("mcp_servers", items) }
	echo := func(items ...any) func(*is.I, response) { return agentWantField("mcp_servers", items) }
	full := []any{
		map[string]any{"name": "docs", "type": "url", "url": "https://mcp.example.com/sse", "headers": map[string]any{"X-Key": "k"}},
		map[string]any{"name": "fs", "type": "stdio", "command": "npx", "args": []any{"-y", "@mcp/fs"}, "env": map[string]any{"ROOT": "/workspace"}},
	}
	bad := agentWantValueError("mcp_servers")
	a.run(t, "", []scenario{
		{name: "url entry without type gets type url", method: "POST", path: "/agents", token: tok,
			body: mcpWith(map[string]any{"name": "s1", "url": "https://a.com/mcp"}), wantStatus: 201,
			check: echo(map[string]any{"name": "s1", "type": "url", "url": "https://a.com/mcp"})},
		{name: "command entry without type gets type stdio", method: "POST", path: "/agents", token: tok,
			body: mcpWith(map[string]any{"name": "s2", "command": "npx", "args": []any{"x"}}), wantStatus: 201,
			check: echo(map[string]any{"name": "s2", "type": "stdio", "command": "npx", "args": []any{"x"}})},
		{name: "typed entries echoed", method: "POST", path: "/agents", token: tok, body: mcpWith(full...), wantStatus: 201, check: echo(full...)},
		{name: "20 servers", method: "POST", path: "/agents", token: tok, body: mcpWith(agentMCPs(20)...), wantStatus: 201},

		{name: "entry not an object", method: "POST", path: "/agents", token: tok, body: mcpWith("s1"), wantStatus: 422, wantDetail: "must be an object", check: bad},
		{name: "entry without name", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"url": "https://a.com/mcp"}), wantStatus: 422, wantDetail: "name", check: bad},
		{name: "duplicate names", method: "POST", path: "/agents", token: tok,
			body: mcpWith(map[string]any{"name": "s1", "url": "https://a.com/1"}, map[string]any{"name": "s1", "url": "https://a.com/2"}), wantStatus: 422, wantDetail: "duplicate", check: bad},
		{name: "more than 20", method: "POST", path: "/agents", token: tok, body: mcpWith(agentMCPs(21)...), wantStatus: 422, wantDetail: "20", check: bad},
		{name: "url type without url", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1", "type": "url"}), wantStatus: 422, wantDetail: "url", check: bad},
		{name: "neither url nor command", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1"}), wantStatus: 422, wantDetail: "url", check: bad},
		{name: "stdio type without command", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1", "type": "stdio", "args": []any{"x"}}), wantStatus: 422, wantDetail: "command", check: bad},
		{name: "unknown type", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1", "type": "sse", "url": "https://a.com"}), wantStatus: 422, wantDetail: "unknown type", check: bad},
		{name: "headers not strings", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1", "url": "https://a.com", "headers": map[string]any{"X": 1}}), wantStatus: 422, check: bad},
		{name: "args not a list of strings", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1", "command": "npx", "args": "x"}), wantStatus: 422, check: bad},
		{name: "env not strings", method: "POST", path: "/agents", token: tok, body: mcpWith(map[string]any{"name": "s1", "command": "npx", "env": map[string]any{"A": true}}), wantStatus: 422, check: bad},
	})
}

// TestAgentBodyLimit: bodies up to 4 MiB are read, so the largest agent the
// skill rules allow fits; anything over 4 MiB is a 413 JSON error.
func TestAgentBodyLimit(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")

	skills := make([]any, 20)
	for i := range skills {
		s := agentSkill(fmt.Sprintf("big-%d", i))
		s["content"] = strings.Repeat(string(rune('a'+i)), 64<<10)
		skills[i] = s
	}
	r := a.do("POST", "/agents", tok, agentWith("skills", skills))
	is.Equal(r.Status, http.StatusCreated)         // 20 skills of 64 KiB (about 1.3 MiB) are accepted
	is.Equal(r.obj()["skills"], agentJSON(skills)) // and echoed exactly

	huge := `{"name":"x","model":"anthropic/claude-sonnet-4-6","runtime":"claude","system":"` + strings.Repeat("s", 4<<20) + `"}`
	r = a.do("POST", "/agents", tok, huge)
	is.Equal(r.Status, http.StatusRequestEntityTooLarge)                        // over 4 MiB is 413
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // the 413 is JSON
	is.True(r.detail() != "")                                                   // with a detail
}

func TestAgentList(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	alice, bob := a.token("alice"), a.token("bob")

	r := a.do("GET", "/agents", alice, nil)
	is.Equal(r.Status, http.StatusOK)                 // list is 200
	is.Equal(r.Body, map[string]any{"data": []any{}}) // an empty list is {"data": []}

	first := a.mustCreate("/agents", alice, agentWith("name", "first"))["id"].(string)
	second := a.mustCreate("/agents", alice, agentWith("name", "second"))["id"].(string)
	third := a.mustCreate("/agents", alice, agentWith("name", "third"))["id"].(string)
	bobs := a.mustCreate("/agents", bob, agentWith("name", "bobs"))["id"].(string)

	r = a.do("GET", "/agents", alice, nil)
	is.Equal(agentIDs(r), []string{third, second, first}) // newest first, only the caller's
	item, _ := r.data()[0].(map[string]any)
	is.Equal(item["name"], "third")         // list items are full agents
	is.Equal(item["provider"], "anthropic") // with provider
	is.Equal(item["runtime"], "claude")     // and runtime

	ar := a.do("POST", "/agents/"+second+"/archive", alice, nil)
	is.Equal(ar.Status, http.StatusOK) // archive
	r = a.do("GET", "/agents", alice, nil)
	is.Equal(agentIDs(r), []string{third, first}) // archived agents are not listed

	r = a.do("GET", "/agents", bob, nil)
	is.Equal(agentIDs(r), []string{bobs}) // another user sees only their own
}

func TestAgentGet(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	created := a.mustCreate("/agents", tok, agentWith("name", "gettable"))
	id := created["id"].(string)
	a.run(t, id, []scenario{
		{name: "by id", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(r.obj(), created) }}, // GET returns the created agent
		{name: "uppercase id", method: "GET", path: "/agents/" + strings.ToUpper(id), token: tok, wantStatus: 200, check: agentWantField("id", id)},
		{name: "unknown id", method: "GET", path: "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b", token: tok, wantStatus: 404, check: agentWantExactDetail("Agent not found")},
		{name: "non-UUID id", method: "GET", path: "/agents/not-a-uuid", token: tok, wantStatus: 404},
		{name: "id with a trailing character", method: "GET", path: "/agents/" + id + "0", token: tok, wantStatus: 404},
		{name: "archive", method: "POST", path: "/agents/{id}/archive", token: tok, wantStatus: 200},
		{name: "archived still readable", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.True(agentTimeRE.MatchString(fmt.Sprint(r.obj()["archived_at"]))) // archived_at set
				is.Equal(r.obj()["name"], "gettable")                                // the agent's fields
			}},
	})
}

func TestAgentUpdate(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	created := a.mustCreate("/agents", tok, agentWith(
		"system", "be brief", "description", "helper", "metadata", map[string]any{"team": "platform"},
		"skills", []any{agentSkill("one")}, "mcp_servers", agentMCPs(1)))
	id := created["id"].(string)

	// unchanged checks that r holds the created agent apart from the keys
	// named in except.
	unchanged := func(except ...string) func(*is.I, response) {
		return func(is *is.I, r response) {
			for k, v := range created {
				if !slices.Contains(except, k) {
					is.Equal(r.obj()[k], v) // untouched fields unchanged
				}
			}
		}
	}
	noop := agentChecks(agentWantField("version", 1), unchanged())
	skill2 := agentSkill("two")
	a.run(t, id, []scenario{
		{name: "invalid JSON", method: "PUT", path: "/agents/{id}", token: tok, body: `{"version":`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "JSON array body", method: "PUT", path: "/agents/{id}", token: tok, body: `[{"version":1}]`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "version missing", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"system": "x"}, wantStatus: 422, check: agentWantLoc("missing", "version")},
		{name: "version null", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": nil, "system": "x"}, wantStatus: 422, check: agentWantLoc("int_type", "version")},
		{name: "version not an integer", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": "one"}, wantStatus: 422, check: agentWantLoc("int_parsing", "version")},
		{name: "version fractional", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1.5}, wantStatus: 422, check: agentWantLoc("int_from_float", "version")},
		{name: "name is a number", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "name": 123}, wantStatus: 422, check: agentWantLoc("string_type", "name")},
		{name: "name longer than 200", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "name": strings.Repeat("n", 201)}, wantStatus: 422, check: agentWantLoc("string_too_long", "name")},
		{name: "wrong type before stale version", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 7, "system": 5}, wantStatus: 422, check: agentWantLoc("string_type", "system")},
		{name: "metadata value not a string", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "metadata": map[string]any{"a": 1}}, wantStatus: 422, check: agentWantLoc("string_type", "metadata", "a")},
		{name: "invalid skills", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "skills": []any{agentSkill("x"), agentSkill("x")}}, wantStatus: 422, wantDetail: "duplicate", check: agentWantValueError("skills")},
		{name: "invalid mcp_servers", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "mcp_servers": []any{"s1"}}, wantStatus: 422, wantDetail: "must be an object", check: agentWantValueError("mcp_servers")},
		{name: "blank model", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "model": "  "}, wantStatus: 422, wantDetail: "Model must be a non-empty string"},
		{name: "stale version", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 5, "system": "x"}, wantStatus: 409, check: agentWantExactDetail("Version mismatch: expected 1, got 5")},
		{name: "unknown runtime", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "runtime": "nope"}, wantStatus: 400, wantDetail: "Unknown runtime: nope"},
		{name: "runtime cannot serve the model", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "runtime": "codex"}, wantStatus: 422, wantDetail: "cannot serve"},
		{name: "model the runtime cannot serve", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "model": "openai/gpt-4.1"}, wantStatus: 422, wantDetail: "cannot serve"},
		{name: "unknown model", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "model": "foo/bar"}, wantStatus: 422, wantDetail: "Unknown model"},
		{name: "unknown provider", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "provider": "foo"}, wantStatus: 422, wantDetail: "Unknown provider"},
		{name: "provider alone re-checks the current model", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "provider": "openai"}, wantStatus: 422, wantDetail: "does not match provider"},
		{name: "failed updates changed nothing", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200, check: noop},

		{name: "no-op: only version", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1}, wantStatus: 200, check: noop},
		{name: "no-op: same values", method: "PUT", path: "/agents/{id}", token: tok,
			body: map[string]any{"version": 1, "name": "hello", "system": "be brief", "description": "helper", "model": agentModel, "runtime": "claude",
				"provider": "", "metadata": map[string]any{"team": "platform"}, "skills": []any{agentSkill("one")}, "mcp_servers": agentMCPs(1)},
			wantStatus: 200, check: noop},
		{name: "no-op: null fields", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "name": nil, "system": nil, "skills": nil, "metadata": nil}, wantStatus: 200, check: noop},
		{name: "no-op: numeric string version", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": "1", "system": "be brief"}, wantStatus: 200, check: noop},
		{name: "no-op wrote no version", method: "GET", path: "/agents/{id}/versions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(len(r.data()), 1) }}, // still only the version-1 snapshot

		{name: "system change bumps to 2", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "system": "be thorough"}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 2), agentWantField("system", "be thorough"), unchanged("system", "version", "updated_at"),
				func(is *is.I, r response) {
					is.True(r.obj()["updated_at"] != created["updated_at"])                        // updated_at moves on a change
					is.True(fmt.Sprint(r.obj()["updated_at"]) > fmt.Sprint(created["updated_at"])) // forward
				})},
		{name: "old version now stale", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "system": "x"}, wantStatus: 409, check: agentWantExactDetail("Version mismatch: expected 2, got 1")},
		{name: "versions v2 then v1", method: "GET", path: "/agents/{id}/versions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 2) // two snapshots
				v2, _ := r.data()[0].(map[string]any)
				v1, _ := r.data()[1].(map[string]any)
				is.Equal(v2["version"], 2.0)          // newest first
				is.Equal(v2["system"], "be thorough") // v2 snapshot holds the new system
				is.Equal(v1["version"], 1.0)          // then v1
				is.Equal(v1["system"], "be brief")    // v1 snapshot keeps the old system
			}},
		{name: "empty system clears it", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "system": ""}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 3), agentWantField("system", nil))},
		{name: "skills replaced", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 3, "skills": []any{skill2}}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 4), agentWantField("skills", []any{skill2}))},
		{name: "empty skills clear them", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 4, "skills": []any{}}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 5), agentWantField("skills", []any{}))},
		{name: "provider era switch derives the runtime", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 5, "provider": "openai", "model": "gpt-4.1"}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 6), agentWantField("runtime", "codex"), agentWantField("provider", "openai"), agentWantField("model", "openai/gpt-4.1"))},
		{name: "runtime era switch", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 6, "runtime": "opencode", "model": "google/gemini-2.5-pro"}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 7), agentWantField("runtime", "opencode"), agentWantField("provider", "google"), agentWantField("model", "google/gemini-2.5-pro"))},
		{name: "name and description change", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 7, "name": "renamed", "description": ""}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 8), agentWantField("name", "renamed"), agentWantField("description", nil), agentWantField("metadata", map[string]any{"team": "platform"}))},
	})
}

// TestAgentUpdateNotFoundAndArchived covers PUT's lookups and state checks
// and their order after body, schema and catalogue checks.
func TestAgentUpdateNotFoundAndArchived(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/agents", tok, agentWith())["id"].(string)
	unknown := "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"
	a.run(t, id, []scenario{
		{name: "unknown id", method: "PUT", path: unknown, token: tok, body: map[string]any{"version": 1, "system": "x"}, wantStatus: 404, check: agentWantExactDetail("Agent not found")},
		{name: "non-UUID id", method: "PUT", path: "/agents/nope", token: tok, body: map[string]any{"version": 1, "system": "x"}, wantStatus: 404},
		{name: "unknown id, invalid JSON", method: "PUT", path: unknown, token: tok, body: `{`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "unknown id, version missing", method: "PUT", path: unknown, token: tok, body: map[string]any{"system": "x"}, wantStatus: 422, check: agentWantLoc("missing", "version")},
		{name: "unknown id, unknown runtime", method: "PUT", path: unknown, token: tok, body: map[string]any{"version": 1, "runtime": "nope"}, wantStatus: 400, wantDetail: "Unknown runtime"},
		{name: "trailing garbage after the object", method: "PUT", path: "/agents/{id}", token: tok, body: `{"version":1,"system":"x"} x`, wantStatus: 400, check: agentWantExactDetail("Invalid JSON")},
		{name: "archive", method: "POST", path: "/agents/{id}/archive", token: tok, wantStatus: 200},
		{name: "update archived", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "system": "x"}, wantStatus: 409, check: agentWantExactDetail("Cannot update an archived agent")},
		{name: "update archived with stale version", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 9, "system": "x"}, wantStatus: 409, check: agentWantExactDetail("Cannot update an archived agent")},
		{name: "archived agent unchanged", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200,
			check: agentChecks(agentWantField("version", 1), agentWantField("system", nil))},
	})
}

func TestAgentMetadataMerge(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	// Create stores metadata as sent, "" values included.
	id := a.mustCreate("/agents", tok, agentWith("metadata", map[string]any{"team": "platform", "blank": ""}))["id"].(string)
	meta := func(version int, want map[string]any) func(*is.I, response) {
		return agentChecks(agentWantField("version", version), agentWantField("metadata", want))
	}
	a.run(t, id, []scenario{
		{name: "create keeps empty values", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200, check: meta(1, map[string]any{"team": "platform", "blank": ""})},
		{name: "new keys are merged in", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "metadata": map[string]any{"env": "staging", "new_key": "val"}}, wantStatus: 200,
			check: meta(2, map[string]any{"team": "platform", "blank": "", "env": "staging", "new_key": "val"})},
		{name: "empty value deletes a key", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "metadata": map[string]any{"team": "", "blank": ""}}, wantStatus: 200,
			check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{name: "deleting an absent key is a no-op", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 3, "metadata": map[string]any{"ghost": ""}}, wantStatus: 200,
			check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{name: "same values are a no-op", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 3, "metadata": map[string]any{"env": "staging"}}, wantStatus: 200,
			check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{name: "empty object is a no-op", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 3, "metadata": map[string]any{}}, wantStatus: 200,
			check: meta(3, map[string]any{"env": "staging", "new_key": "val"})},
		{name: "overwrite", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 3, "metadata": map[string]any{"env": "prod"}}, wantStatus: 200,
			check: meta(4, map[string]any{"env": "prod", "new_key": "val"})},
	})

	// The e2e suite's example.
	e2e := a.mustCreate("/agents", tok, agentWith("metadata", map[string]any{"key1": "val1", "key2": "val2"}))["id"].(string)
	a.run(t, e2e, []scenario{
		{name: "e2e merge", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "metadata": map[string]any{"key1": "updated", "key2": "", "key3": "new"}}, wantStatus: 200,
			check: meta(2, map[string]any{"key1": "updated", "key3": "new"})},
		{name: "e2e merge snapshot", method: "GET", path: "/agents/{id}/versions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				v2, _ := r.data()[0].(map[string]any)
				is.Equal(v2["metadata"], map[string]any{"key1": "updated", "key3": "new"}) // the v2 snapshot holds the merged metadata
			}},
	})
}

func TestAgentEnvironmentID(t *testing.T) {
	a := newAPI(t)
	tok, bob := a.token("alice"), a.token("bob")
	envA := a.mustCreate("/environments", tok, map[string]any{"name": "env-a"})["id"].(string)
	envB := a.mustCreate("/environments", tok, map[string]any{"name": "env-b"})["id"].(string)
	archived := a.mustCreate("/environments", tok, map[string]any{"name": "env-old"})["id"].(string)
	if r := a.do("POST", "/environments/"+archived+"/archive", tok, nil); r.Status != http.StatusOK {
		t.Fatalf("archive environment: %d %s", r.Status, r.Raw)
	}
	bobsEnv := a.mustCreate("/environments", bob, map[string]any{"name": "env-bob"})["id"].(string)
	unknown := "0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b"

	a.run(t, "", []scenario{
		{name: "create with environment", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", envA), wantStatus: 201, check: agentWantField("environment_id", envA)},
		{name: "create with uppercase environment id", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", strings.ToUpper(envA)), wantStatus: 201, check: agentWantField("environment_id", envA)},
		{name: "create with empty environment id", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", ""), wantStatus: 201, check: agentWantField("environment_id", nil)},
		{name: "create with null environment id", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", nil), wantStatus: 201, check: agentWantField("environment_id", nil)},
		{name: "create with unknown environment", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", unknown), wantStatus: 404, check: agentWantExactDetail("Environment not found")},
		{name: "create with non-UUID environment", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", "env-a"), wantStatus: 404, check: agentWantExactDetail("Environment not found")},
		{name: "create with another user's environment", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", bobsEnv), wantStatus: 404, check: agentWantExactDetail("Environment not found")},
		{name: "create with archived environment", method: "POST", path: "/agents", token: tok, body: agentWith("environment_id", archived), wantStatus: 409, check: agentWantExactDetail("Cannot assign an archived environment to an agent")},
	})

	id := a.mustCreate("/agents", tok, agentWith("environment_id", envA))["id"].(string)
	a.run(t, id, []scenario{
		{name: "absent environment_id leaves it", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "system": "s"}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 2), agentWantField("environment_id", envA))},
		{name: "same environment is a no-op", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "environment_id": envA}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 2), agentWantField("environment_id", envA))},
		{name: "unknown environment", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "environment_id": unknown}, wantStatus: 404, check: agentWantExactDetail("Environment not found")},
		{name: "another user's environment", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "environment_id": bobsEnv}, wantStatus: 404, check: agentWantExactDetail("Environment not found")},
		{name: "archived environment", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "environment_id": archived}, wantStatus: 409, check: agentWantExactDetail("Cannot assign an archived environment to an agent")},
		{name: "switch environment", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "environment_id": envB}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 3), agentWantField("environment_id", envB))},
		{name: "explicit null detaches", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 3, "environment_id": nil}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 4), agentWantField("environment_id", nil))},
		{name: "null again is a no-op", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 4, "environment_id": nil}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 4), agentWantField("environment_id", nil))},
		{name: "snapshots carry the environment", method: "GET", path: "/agents/{id}/versions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				var envs []any
				for _, v := range r.data() {
					envs = append(envs, v.(map[string]any)["environment_id"])
				}
				is.Equal(envs, []any{nil, envB, envA, envA}) // v4 detached, v3 env-b, v2 and v1 env-a
			}},
	})
}

func TestAgentArchive(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	created := a.mustCreate("/agents", tok, agentWith())
	id := created["id"].(string)
	a.run(t, id, []scenario{
		{name: "archive", method: "POST", path: "/agents/{id}/archive", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				got := r.obj()
				is.Equal(got["id"], id)                                                    // the archived agent is returned
				is.True(agentTimeRE.MatchString(fmt.Sprint(got["archived_at"])))           // archived_at set
				is.Equal(got["version"], 1.0)                                              // archiving does not bump the version
				is.True(fmt.Sprint(got["updated_at"]) > fmt.Sprint(created["updated_at"])) // archiving bumps updated_at
			}},
		{name: "archive again", method: "POST", path: "/agents/{id}/archive", token: tok, wantStatus: 409, check: agentWantExactDetail("Agent is already archived")},
		{name: "still readable", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) { is.True(r.obj()["archived_at"] != nil) }}, // GET shows archived_at
		{name: "no snapshot written", method: "GET", path: "/agents/{id}/versions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(len(r.data()), 1) }}, // archive writes no version
		{name: "not listed", method: "GET", path: "/agents", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(len(r.data()), 0) }}, // archived agents are not listed
		{name: "archive unknown", method: "POST", path: "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b/archive", token: tok, wantStatus: 404, check: agentWantExactDetail("Agent not found")},
		{name: "archive non-UUID", method: "POST", path: "/agents/xyz/archive", token: tok, wantStatus: 404},
	})
}

func TestAgentVersions(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/agents", tok, agentWith())["id"].(string)
	s1 := map[string]any{"name": "s1", "url": "https://a.com/mcp"}
	s1Typed := map[string]any{"name": "s1", "type": "url", "url": "https://a.com/mcp"}
	a.run(t, id, []scenario{
		{name: "updating mcp_servers bumps the version", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 1, "mcp_servers": []any{s1}}, wantStatus: 200,
			check: agentChecks(agentWantField("version", 2), agentWantField("mcp_servers", []any{s1Typed}))},
		{name: "the same entry again is a no-op", method: "PUT", path: "/agents/{id}", token: tok, body: map[string]any{"version": 2, "mcp_servers": []any{s1}}, wantStatus: 200,
			check: agentWantField("version", 2)},
		{name: "newest first", method: "GET", path: "/agents/{id}/versions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 2) // v1 and v2
				v2, _ := r.data()[0].(map[string]any)
				v1, _ := r.data()[1].(map[string]any)
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
		{name: "unknown agent", method: "GET", path: "/agents/0190a1b2-c3d4-4e5f-8a9b-0c1d2e3f4a5b/versions", token: tok, wantStatus: 404, check: agentWantExactDetail("Agent not found")},
		{name: "non-UUID agent", method: "GET", path: "/agents/v1/versions", token: tok, wantStatus: 404},
	})
}

func TestAgentMethodNotAllowed(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/agents", tok, agentWith())["id"].(string)
	allow := func(methods ...string) func(*is.I, response) {
		return func(is *is.I, r response) {
			is.Equal(r.Body, map[string]any{"detail": "Method not allowed"}) // exactly {"detail": "Method not allowed"}
			for _, m := range methods {
				is.True(strings.Contains(r.Header.Get("Allow"), m)) // Allow names the route's methods
			}
		}
	}
	a.run(t, id, []scenario{
		{name: "PATCH /agents without auth", method: "PATCH", path: "/agents", token: "", body: map[string]any{}, wantStatus: 405, check: allow("GET", "POST")},
		{name: "PATCH /agents", method: "PATCH", path: "/agents", token: tok, body: map[string]any{}, wantStatus: 405, check: allow("GET", "POST")},
		{name: "PUT /agents", method: "PUT", path: "/agents", token: tok, body: map[string]any{}, wantStatus: 405, check: allow("GET", "POST")},
		{name: "DELETE /agents/{id} without auth", method: "DELETE", path: "/agents/{id}", token: "", wantStatus: 405, check: allow("GET", "PUT")},
		{name: "DELETE /agents/{id}", method: "DELETE", path: "/agents/{id}", token: tok, wantStatus: 405, check: allow("GET", "PUT")},
		{name: "POST /agents/{id}", method: "POST", path: "/agents/{id}", token: tok, body: map[string]any{}, wantStatus: 405, check: allow("GET", "PUT")},
		{name: "GET /agents/{id}/archive", method: "GET", path: "/agents/{id}/archive", token: "", wantStatus: 405, check: allow("POST")},
		{name: "POST /agents/{id}/versions", method: "POST", path: "/agents/{id}/versions", token: "", wantStatus: 405, check: allow("GET")},
		{name: "agent still there", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200, check: agentWantField("version", 1)},
		{name: "trailing slash is another path", method: "GET", path: "/agents/", token: tok, wantStatus: 404},
		{name: "unknown sub-path", method: "GET", path: "/agents/{id}/tools", token: tok, wantStatus: 404},
	})
}

func TestAgentAuth(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/agents", tok, agentWith())["id"].(string)
	var rows []scenario
	for _, rt := range []struct{ method, path string }{
		{"POST", "/agents"}, {"GET", "/agents"}, {"GET", "/agents/{id}"}, {"PUT", "/agents/{id}"},
		{"POST", "/agents/{id}/archive"}, {"GET", "/agents/{id}/versions"},
	} {
		var body any
		if rt.method != "GET" {
			body = map[string]any{"version": 1, "name": "x", "model": agentModel, "runtime": "claude"}
		}
		rows = append(rows,
			scenario{name: rt.method + " " + rt.path + " without token", method: rt.method, path: rt.path, body: body, wantStatus: 401},
			scenario{name: rt.method + " " + rt.path + " with a bad token", method: rt.method, path: rt.path, token: "aod_invalid_key", body: body, wantStatus: 401})
	}
	rows = append(rows, scenario{name: "nothing changed", method: "GET", path: "/agents/{id}", token: tok, wantStatus: 200,
		check: agentChecks(agentWantField("version", 1), agentWantField("archived_at", nil))})
	a.run(t, id, rows)
}

// TestAgentOwnership: another user's agent is indistinguishable from a
// missing one.
func TestAgentOwnership(t *testing.T) {
	a := newAPI(t)
	alice, bob := a.token("alice"), a.token("bob")
	id := a.mustCreate("/agents", alice, agentWith("system", "mine"))["id"].(string)
	notFound := agentWantExactDetail("Agent not found")
	a.run(t, id, []scenario{
		{name: "GET", method: "GET", path: "/agents/{id}", token: bob, wantStatus: 404, check: notFound},
		{name: "PUT", method: "PUT", path: "/agents/{id}", token: bob, body: map[string]any{"version": 1, "system": "theirs"}, wantStatus: 404, check: notFound},
		{name: "archive", method: "POST", path: "/agents/{id}/archive", token: bob, wantStatus: 404, check: notFound},
		{name: "versions", method: "GET", path: "/agents/{id}/versions", token: bob, wantStatus: 404, check: notFound},
		{name: "list", method: "GET", path: "/agents", token: bob, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(len(r.data()), 0) }}, // another user's agents are not listed
		{name: "owner's agent untouched", method: "GET", path: "/agents/{id}", token: alice, wantStatus: 200,
			check: agentChecks(agentWantField("version", 1), agentWantField("system", "mine"), agentWantField("archived_at", nil))},
		{name: "owner lists it", method: "GET", path: "/agents", token: alice, wantStatus: 200,
			check: func(is *is.I, r response) { is.Equal(agentIDs(r), []string{id}) }}, // the owner sees the agent
	})
}

// TestAgentUpdateConcurrent: optimistic concurrency holds under racing
// writers; exactly one PUT at a version wins, the others see the mismatch.
func TestAgentUpdateConcurrent(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/agents", tok, agentWith())["id"].(string)

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

	v := a.do("GET", "/agents/"+id+"/versions", tok, nil)
	is.Equal(len(v.data()), 2) // one new snapshot, not one per writer
}
