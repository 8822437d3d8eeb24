package server_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// The sessions API (api.md §2, §3, §5.4, §5.5, §9; original-api.md §8),
// driven over HTTP against a real server. A test whose sessions run gets
// the real runner, which runs real processes: a session of the shell agent
// runs its prompt as a bash script in a sprite. One that only looks at what
// the API accepts and stores gets the recording runner. Helpers here carry
// a sess prefix because other files of the package define their own.

// sessMissingID is a well-formed UUID no session or agent has.
const sessMissingID = "00000000-0000-4000-8000-0000000000aa"

// Exact key sets of the contract's shapes (api.md §3).
var (
	sessAckKeys       = []string{"current_turn", "environment_id", "id", "resources", "status", "stream_url"}
	sessPromptAckKeys = []string{"current_turn", "id", "status", "stream_url"}
	sessSessionKeys   = []string{"agent_id", "budget_exhausted", "budget_usd", "created_at", "current_turn", "environment_id", "exit_code", "id", "provider",
		"resources", "runtime", "status", "turn_count", "updated_at", "usage"}
	sessTurnKeys     = []string{"created_at", "ended_at", "exit_code", "interrupted", "prompt", "result", "started_at", "status", "turn_number", "usage"}
	sessResourceKeys = []string{"mount_path", "type", "url"}
)

// sessKeys returns the sorted keys of v when it is a JSON object.
func sessKeys(v any) []string {
	m, _ := v.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sessWaitProcs waits until the session has at least n live processes
// named comm and reports whether it got there before the deadline.
func sessWaitProcs(id, comm string, n int) bool {
	return testkit.Eventually(apitest.Patience, func() bool {
		count := 0
		for _, p := range testkit.SessionProcs(id) {
			if p.Comm == comm {
				count++
			}
		}
		return count >= n
	})
}

// sessWaitNoProcs waits until no process of the session is left and
// returns what is left at the deadline (nil when none).
func sessWaitNoProcs(id string, within time.Duration) []string {
	var left []string
	testkit.Eventually(within, func() bool {
		left = testkit.Comms(testkit.SessionProcs(id))
		return len(left) == 0
	})
	return left
}

// sessDoWithin sends a bodyless request that must be answered within d (a
// guard for "answers at once"), returning its status and decoded body.
func sessDoWithin(a *apitest.Server, d time.Duration, method, path, tok string) (int, map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := a.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var body map[string]any
	err = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body, err
}

// sessExactDetail is a scenario check for an exact string detail.
func sessExactDetail(want string) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		is.Equal(r.Obj(), map[string]any{"detail": want}) // exactly {"detail": want}
	}
}

// sessWantLoc is a scenario check for a 422 list detail with an item whose
// loc is loc (ints as Go ints).
func sessWantLoc(loc ...any) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		items, ok := r.Obj()["detail"].([]any)
		is.True(ok && len(items) > 0) // 422 detail is a non-empty list
		want, _ := json.Marshal(loc)
		found := false
		for _, it := range items {
			m, _ := it.(map[string]any)
			got, _ := json.Marshal(m["loc"])
			if string(got) == string(want) {
				found = true
				_, hasMsg := m["msg"].(string)
				_, hasType := m["type"].(string)
				is.True(hasMsg && hasType) // the item has pydantic's type and msg
			}
		}
		is.True(found) // an item's loc names the field
	}
}

// sessWantMsg is a scenario check for a 422 list detail with an item at loc
// whose msg contains msg.
func sessWantMsg(msg string, loc ...any) func(*is.I, apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		sessWantLoc(loc...)(is, r)
		items, _ := r.Obj()["detail"].([]any)
		want, _ := json.Marshal(loc)
		found := false
		for _, it := range items {
			m, _ := it.(map[string]any)
			got, _ := json.Marshal(m["loc"])
			text, _ := m["msg"].(string)
			found = found || (string(got) == string(want) && strings.Contains(text, msg))
		}
		is.True(found) // the item's msg has the contract's message
	}
}

// ---------------------------------------------------------------- create

func TestSessionCreateAck(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok, "system", "echo from-system")

	r := a.Do("POST", "/sessions", tok, apitest.SessionBody(agent, "echo hi"))
	is.Equal(r.Status, http.StatusAccepted)                                     // create is 202
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
	ack := r.Obj()
	is.Equal(sessKeys(ack), sessAckKeys) // the ack has exactly the contract's keys
	id, _ := ack["id"].(string)
	is.True(canonicalIDPattern.MatchString(id))                  // the id is a canonical lowercase UUID
	is.Equal(ack["status"], "pending")                           // a new session is pending
	is.Equal(ack["stream_url"], "/sessions/"+id+"/stream")       // stream_url is the relative stream path
	is.Equal(ack["environment_id"], nil)                         // no environment
	is.Equal(ack["resources"], []any{})                          // no resources: an empty list
	is.Equal(ack["current_turn"], float64(1))                    // turn 1
	is.True(strings.Contains(string(r.Raw), `"current_turn":1`)) // current_turn is a JSON integer

	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil)
	is.Equal(turns.Status, http.StatusOK) // turns listed
	is.Equal(len(turns.Data()), 1)        // exactly one turn
	turn, _ := turns.Data()[0].(map[string]any)
	is.Equal(turn["turn_number"], float64(1))                                          // numbered 1
	is.Equal(turn["prompt"], "echo hi")                                                // the raw prompt, without the agent's system prompt
	is.True(slices.Contains([]any{"pending", "running", "completed"}, turn["status"])) // a turn status of the contract

	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit") // the session ran
	got := a.Session(tok, id)
	is.Equal(got["turn_count"], float64(1))   // still one turn
	is.Equal(got["current_turn"], float64(1)) // current turn 1
	_, hasPrompt := got["prompt"]
	is.True(!hasPrompt) // no prompt on the session
}

func TestSessionCreateValidation(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	agent := a.ShellAgent(tok)
	bobsAgent := a.ShellAgent(bob)
	archived := a.ShellAgent(tok)
	is.New(t).Equal(a.Do("POST", "/agents/"+archived+"/archive", tok, nil).Status, http.StatusOK) // archive an agent

	ok := func(kv ...any) map[string]any { return apitest.SessionBody(agent, "true", kv...) }
	missing := func(key string) map[string]any { b := ok(); delete(b, key); return b }
	accepted := 0
	created := func(is *is.I, r apitest.Response) {
		accepted++
		is.Equal(r.Obj()["status"], "pending") // the ack
	}
	rows := []apitest.Scenario{
		{Name: "invalid JSON", Method: "POST", Path: "/sessions", Token: tok, Body: `{"agent_id": `, WantStatus: 400,
			Check: sessExactDetail("Invalid JSON")},
		{Name: "JSON array", Method: "POST", Path: "/sessions", Token: tok, Body: `[1]`, WantStatus: 400,
			Check: sessExactDetail("Invalid JSON")},
		{Name: "trailing data", Method: "POST", Path: "/sessions", Token: tok, Body: `{"agent_id": "x", "prompt": "y"} {}`, WantStatus: 400,
			Check: sessExactDetail("Invalid JSON")},
		{Name: "missing prompt", Method: "POST", Path: "/sessions", Token: tok, Body: missing("prompt"), WantStatus: 422,
			Check: sessWantLoc("prompt")},
		{Name: "missing agent_id", Method: "POST", Path: "/sessions", Token: tok, Body: missing("agent_id"), WantStatus: 422,
			Check: sessWantLoc("agent_id")},
		{Name: "empty body", Method: "POST", Path: "/sessions", Token: tok, Body: map[string]any{}, WantStatus: 422,
			Check: func(is *is.I, r apitest.Response) {
				sessWantLoc("agent_id")(is, r)
				sessWantLoc("prompt")(is, r)
			}},
		{Name: "empty prompt", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(agent, ""), WantStatus: 422,
			Check: sessWantLoc("prompt")},
		{Name: "prompt not a string", Method: "POST", Path: "/sessions", Token: tok, Body: ok("prompt", 5), WantStatus: 422,
			Check: sessWantLoc("prompt")},
		{Name: "agent_id not a string", Method: "POST", Path: "/sessions", Token: tok, Body: ok("agent_id", 5), WantStatus: 422,
			Check: sessWantLoc("agent_id")},
		{Name: "timeout soon", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", "soon"), WantStatus: 422,
			Check: sessWantLoc("timeout")},
		{Name: "timeout 5", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 5), WantStatus: 422,
			Check: sessWantLoc("timeout")},
		{Name: "timeout 9", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 9), WantStatus: 422,
			Check: sessWantLoc("timeout")},
		{Name: "timeout 3601", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 3601), WantStatus: 422,
			Check: sessWantLoc("timeout")},
		{Name: "timeout 4000", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 4000), WantStatus: 422,
			Check: sessWantLoc("timeout")},
		{Name: "timeout 12.5", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 12.5), WantStatus: 422,
			Check: sessWantLoc("timeout")},
		{Name: "validation before lookup: unknown agent with a bad timeout", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(sessMissingID, "true", "timeout", 5), WantStatus: 422, Check: sessWantLoc("timeout")},
		{Name: "unknown agent", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(sessMissingID, "true"), WantStatus: 404,
			Check: sessExactDetail("Agent not found")},
		{Name: "agent_id not a UUID", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody("not-a-uuid", "true"), WantStatus: 404,
			Check: sessExactDetail("Agent not found")},
		{Name: "another user's agent", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(bobsAgent, "true"), WantStatus: 404,
			Check: sessExactDetail("Agent not found")},
		{Name: "archived agent", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(archived, "true"), WantStatus: 409,
			Check: sessExactDetail("Cannot create session with archived agent")},
		{Name: "no session was created by the refusals", Method: "GET", Path: "/sessions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 0) // nothing stored
			}},
		{Name: "timeout 10", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 10), WantStatus: 202, Check: created},
		{Name: "timeout 3600", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", 3600), WantStatus: 202, Check: created},
		{Name: "timeout as a numeric string", Method: "POST", Path: "/sessions", Token: tok, Body: ok("timeout", "120"), WantStatus: 202, Check: created},
		{Name: "timeout as an integral float", Method: "POST", Path: "/sessions", Token: tok, Body: `{"agent_id": "` + agent + `", "prompt": "true", "timeout": 120.0}`,
			WantStatus: 202, Check: created},
		{Name: "timeout absent", Method: "POST", Path: "/sessions", Token: tok, Body: ok(), WantStatus: 202, Check: created},
		{Name: "agent_id in upper case", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(strings.ToUpper(agent), "true"),
			WantStatus: 202, Check: created},
		{Name: "one session per 202", Method: "GET", Path: "/sessions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), accepted) // every 202 stored one session, nothing else did
			}},
	}
	a.Run(t, "", rows)

	// The stored per-turn timeouts: the value given, else the default 600.
	is := is.New(t)
	ctx := context.Background()
	u, err := a.DB.UserByName(ctx, "alice")
	is.NoErr(err) // find alice
	list := a.Do("GET", "/sessions", tok, nil).Data()
	var timeouts []int
	for i := len(list) - 1; i >= 0; i-- { // oldest first: the table's order
		id, _ := list[i].(map[string]any)["id"].(string)
		turns, err := a.DB.ListTurns(ctx, u.ID, id)
		is.NoErr(err)           // read the turns
		is.Equal(len(turns), 1) // one turn
		timeouts = append(timeouts, turns[0].Timeout)
	}
	is.Equal(timeouts, []int{10, 3600, 120, 120, 600, 600}) // the timeout given, else the default 600
	for _, it := range list {
		id, _ := it.(map[string]any)["id"].(string)
		is.Equal(a.Finish(tok, id).Last().Type(), "exit") // each accepted session runs to its end
	}
}

func TestSessionEnvironments(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	bob := a.Token("bob")
	env1, _ := a.MustCreate("/environments", tok, map[string]any{"name": "one"})["id"].(string)
	env2, _ := a.MustCreate("/environments", tok, map[string]any{"name": "two"})["id"].(string)
	gone, _ := a.MustCreate("/environments", tok, map[string]any{"name": "gone"})["id"].(string)
	bobsEnv, _ := a.MustCreate("/environments", bob, map[string]any{"name": "bobs"})["id"].(string)
	plain := a.ShellAgent(tok)
	withEnv := a.ShellAgent(tok, "environment_id", env1)
	withGone := a.ShellAgent(tok, "environment_id", gone)
	is.New(t).Equal(a.Do("POST", "/environments/"+gone+"/archive", tok, nil).Status, http.StatusOK) // archive one

	ackEnv := func(want any) func(*is.I, apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			is.Equal(r.Obj()["environment_id"], want) // the ack's environment_id
			id, _ := r.Obj()["id"].(string)
			is.Equal(a.Session(tok, id)["environment_id"], want) // GET shows the same environment
		}
	}
	a.Run(t, "", []apitest.Scenario{
		{Name: "explicit environment", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true", "environment_id", env2), WantStatus: 202, Check: ackEnv(env2)},
		{Name: "agent's default inherited", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(withEnv, "true"), WantStatus: 202, Check: ackEnv(env1)},
		{Name: "explicit overrides the agent's", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(withEnv, "true", "environment_id", env2), WantStatus: 202, Check: ackEnv(env2)},
		{Name: "null uses the agent's", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(withEnv, "true", "environment_id", nil), WantStatus: 202, Check: ackEnv(env1)},
		{Name: "empty string uses the agent's", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(withEnv, "true", "environment_id", ""), WantStatus: 202, Check: ackEnv(env1)},
		{Name: "no environment", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true"), WantStatus: 202, Check: ackEnv(nil)},
		{Name: "explicit archived environment", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true", "environment_id", gone), WantStatus: 409,
			Check: sessExactDetail("Cannot create session with archived environment")},
		{Name: "agent's default archived", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(withGone, "true"), WantStatus: 409, Check: sessExactDetail("Cannot create session with archived environment")},
		{Name: "a good explicit environment beats an archived default", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(withGone, "true", "environment_id", env2), WantStatus: 202, Check: ackEnv(env2)},
		{Name: "unknown environment", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true", "environment_id", sessMissingID), WantStatus: 404, Check: sessExactDetail("Environment not found")},
		{Name: "environment id not a UUID", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true", "environment_id", "nope"), WantStatus: 404, Check: sessExactDetail("Environment not found")},
		{Name: "another user's environment", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true", "environment_id", bobsEnv), WantStatus: 404, Check: sessExactDetail("Environment not found")},
		{Name: "environment_id not a string", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(plain, "true", "environment_id", 7), WantStatus: 422, Check: sessWantLoc("environment_id")},
		{Name: "only the 202s stored sessions", Method: "GET", Path: "/sessions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 7) // seven accepted creates
			}},
	})
}

func TestSessionCredentials(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	claude, _ := a.MustCreate("/agents", tok, map[string]any{"name": "c", "runtime": "claude", "model": "anthropic/claude-sonnet-4-6"})["id"].(string)
	codex, _ := a.MustCreate("/agents", tok, map[string]any{"name": "x", "runtime": "codex", "model": "openai/gpt-5"})["id"].(string)
	gemini, _ := a.MustCreate("/agents", tok, map[string]any{"name": "g", "runtime": "gemini", "model": "google/gemini-2.5-pro"})["id"].(string)
	anthropicEnv, _ := a.MustCreate("/environments", tok, map[string]any{"name": "keys", "env_vars": map[string]any{"ANTHROPIC_API_KEY": "from-env"}})["id"].(string)
	secrets := func(kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	var accepted []string
	created := func(is *is.I, r apitest.Response) {
		id, _ := r.Obj()["id"].(string)
		is.True(id != "") // the ack has an id
		accepted = append(accepted, id)
	}
	a.Run(t, "", []apitest.Scenario{
		{Name: "claude without a key", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(claude, "hi"),
			WantStatus: 400, Check: sessNoKey("No API key configured for runtime: claude")},
		{Name: "claude with another runtime's key", Method: "POST", Path: "/sessions", Token: tok,
			Body:       apitest.SessionBody(claude, "hi", "secret_env_vars", secrets("OPENAI_API_KEY", "x")),
			WantStatus: 400, Check: sessNoKey("No API key configured for runtime: claude")},
		{Name: "codex without a key", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(codex, "hi"),
			WantStatus: 400, Check: sessNoKey("No API key configured for runtime: codex")},
		{Name: "codex with an Anthropic key only", Method: "POST", Path: "/sessions", Token: tok,
			Body:       apitest.SessionBody(codex, "hi", "secret_env_vars", secrets("ANTHROPIC_API_KEY", "x")),
			WantStatus: 400, Check: sessNoKey("No API key configured for runtime: codex")},
		{Name: "gemini without a key", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(gemini, "hi"),
			WantStatus: 400, Check: sessNoKey("No API key configured for runtime: gemini")},
		{Name: "no session stored by the refusals", Method: "GET", Path: "/sessions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 0) // nothing stored
			}},
		{Name: "claude with ANTHROPIC_API_KEY in secret_env_vars", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(claude, "hi", "secret_env_vars", secrets("ANTHROPIC_API_KEY", "x")), WantStatus: 202, Check: created},
		{Name: "claude with CLAUDE_CODE_OAUTH_TOKEN", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(claude, "hi", "secret_env_vars", secrets("CLAUDE_CODE_OAUTH_TOKEN", "x")), WantStatus: 202, Check: created},
		{Name: "claude with ANTHROPIC_AUTH_TOKEN (a gateway's bearer token)", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(claude, "hi", "secret_env_vars", secrets("ANTHROPIC_AUTH_TOKEN", "x")), WantStatus: 202, Check: created},
		{Name: "claude with the key in the environment's env_vars", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(claude, "hi", "environment_id", anthropicEnv), WantStatus: 202, Check: created},
		{Name: "codex with OPENAI_API_KEY", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(codex, "hi", "secret_env_vars", secrets("OPENAI_API_KEY", "x")), WantStatus: 202, Check: created},
		{Name: "gemini with GEMINI_API_KEY", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(gemini, "hi", "secret_env_vars", secrets("GEMINI_API_KEY", "x")), WantStatus: 202, Check: created},
	})

	// An accepted session goes on to provision its runtime's CLI. Running
	// the CLIs is the runtime tests' business (they need the npm cache):
	// here each session is stopped once install_runtime has begun.
	t.Run("accepted sessions go on to install their runtime", func(t *testing.T) {
		is := is.New(t)
		is.Equal(len(accepted), 6) // six sessions were accepted
		for _, id := range accepted {
			s := a.Stream(tok, id, apitest.StreamOptions{Stop: func(e testkit.Frame) bool {
				return e.Type() == "stage" && e.Data["stage"] == "install_runtime"
			}})
			is.Equal(s.Last().Type(), "stage")                  // provisioning began
			is.Equal(s.Last().Data["stage"], "install_runtime") // and reached install_runtime
			r := a.Do("POST", "/sessions/"+id+"/terminate", tok, nil)
			is.Equal(r.Status, http.StatusOK) // stop it
		}
		got := a.Session(tok, accepted[0])
		is.Equal(got["runtime"], "claude")                               // the agent's runtime
		is.Equal(got["provider"], "anthropic")                           // and provider
		is.Equal(a.Finish(tok, accepted[0]).Last().Type(), "terminated") // its stream ends terminated
	})
}

// With the runtimes pointed at a model API that needs no key (the fake
// model), a session needs no key either (api.md §1, Credentials).
func TestSessionCredentialsKeyless(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, apitest.Options{Keyless: func(string) bool { return true }})
	tok := a.Token("alice")
	claude, _ := a.MustCreate("/agents", tok, map[string]any{"name": "c", "runtime": "claude", "model": "anthropic/claude-sonnet-4-6"})["id"].(string)
	r := a.Do("POST", "/sessions", tok, apitest.SessionBody(claude, "hi"))
	is.Equal(r.Status, http.StatusAccepted) // no key needed
	id, _ := r.Obj()["id"].(string)
	is.Equal(a.Do("POST", "/sessions/"+id+"/terminate", tok, nil).Status, http.StatusOK) // stop it: running the CLI is not this test's business
	want := []apitest.Call{{Op: "enqueue", SessionID: id}, {Op: "terminate", SessionID: id}}
	is.Equal(a.Recorder.Calls(), want) // the runner was told to run the session, then to stop it
}

func TestSessionQuota(t *testing.T) {
	t.Parallel()
	// Enough runner slots that a new session never queues behind the
	// sleeping ones.
	a := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, MaxConcurrent: 2, MaxRunning: 8})
	ctx := context.Background()
	alice := a.Token("alice")
	bob := a.Token("bob")
	carol := a.Token("carol")
	is := is.New(t)
	is.NoErr(a.DB.SetUserQuota(ctx, "alice", 1)) // alice's own limit: 1, below the server's 2
	is.NoErr(a.DB.SetUserQuota(ctx, "carol", 3)) // carol's own limit: 3, above the server's 2
	aliceAgent := a.ShellAgent(alice)
	bobAgent := a.ShellAgent(bob)
	carolAgent := a.ShellAgent(carol)

	// Finished sessions don't count.
	done := a.StartSession(alice, apitest.SessionBody(aliceAgent, "true"))
	is.Equal(a.Finish(alice, done).Last().Type(), "exit") // a finished session
	long := a.StartSession(alice, apitest.SessionBody(aliceAgent, "sleep 30"))

	r := a.Do("POST", "/sessions", alice, apitest.SessionBody(aliceAgent, "true"))
	is.Equal(r.Status, http.StatusTooManyRequests) // alice is at her limit
	want429 := map[string]any{
		"detail": "Concurrent session limit reached (1/1). Terminate an active session before starting a new one.",
		"limit":  float64(1),
		"active": float64(1),
	}
	is.Equal(r.Obj(), want429)                                                                             // the exact 429 body
	is.True(strings.Contains(string(r.Raw), `"limit":1`) && strings.Contains(string(r.Raw), `"active":1`)) // limit and active are JSON integers
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json"))                            // JSON content type
	is.Equal(a.SessionCount(alice), 2)                                                                     // no session row was created

	// Other users are not affected, and a per-user limit above the
	// server's default is honoured too.
	b1 := a.StartSession(bob, apitest.SessionBody(bobAgent, "sleep 30"))
	b2 := a.StartSession(bob, apitest.SessionBody(bobAgent, "sleep 30"))
	r = a.Do("POST", "/sessions", bob, apitest.SessionBody(bobAgent, "true"))
	is.Equal(r.Status, http.StatusTooManyRequests) // bob is at the server's default of 2
	is.Equal(r.Obj()["limit"], float64(2))         // the server default
	is.Equal(r.Obj()["active"], float64(2))        // bob's two active sessions
	c := []string{
		a.StartSession(carol, apitest.SessionBody(carolAgent, "sleep 30")),
		a.StartSession(carol, apitest.SessionBody(carolAgent, "sleep 30")),
		a.StartSession(carol, apitest.SessionBody(carolAgent, "sleep 30")),
	}
	r = a.Do("POST", "/sessions", carol, apitest.SessionBody(carolAgent, "true"))
	is.Equal(r.Status, http.StatusTooManyRequests)                                                                         // carol is at her own limit of 3
	is.Equal(r.Detail(), "Concurrent session limit reached (3/3). Terminate an active session before starting a new one.") // carol's numbers

	// Terminating frees the slot.
	is.Equal(a.Do("POST", "/sessions/"+long+"/terminate", alice, nil).Status, http.StatusOK) // terminate alice's running session
	again := a.Do("POST", "/sessions", alice, apitest.SessionBody(aliceAgent, "true"))
	is.Equal(again.Status, http.StatusAccepted) // alice can start a session again
	id, _ := again.Obj()["id"].(string)
	is.Equal(a.Finish(alice, id).Last().Type(), "exit") // and it runs

	for _, s := range append([]string{b1, b2}, c...) {
		tok := bob
		if slices.Contains(c, s) {
			tok = carol
		}
		is.Equal(a.Do("POST", "/sessions/"+s+"/terminate", tok, nil).Status, http.StatusOK) // clean up
	}
}

func TestSessionResources(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	const token = "ghp_sentinelTOKEN_4c1d"
	repo := func(url string, kv ...any) map[string]any {
		m := map[string]any{"type": "github_repository", "url": url}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	repos := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = repo(fmt.Sprintf("https://github.com/acme/r%d", i))
		}
		return out
	}
	body := func(rs ...any) map[string]any { return apitest.SessionBody(agent, "true", "resources", rs) }
	noToken := func(is *is.I, r apitest.Response) {
		is.True(!strings.Contains(string(r.Raw), token)) // the token is never echoed
	}
	var ids []string
	wantResources := func(want ...map[string]any) func(*is.I, apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			noToken(is, r)
			wantJSON := agentJSON(want)
			if len(want) == 0 {
				wantJSON = []any{}
			}
			is.Equal(r.Obj()["resources"], wantJSON) // the ack's resources
			rs, _ := r.Obj()["resources"].([]any)
			for _, res := range rs {
				is.Equal(sessKeys(res), sessResourceKeys) // each resource is exactly {type, url, mount_path}
			}
			id, _ := r.Obj()["id"].(string)
			ids = append(ids, id)
			got := a.Do("GET", "/sessions/"+id, tok, nil)
			noToken(is, got)
			is.Equal(got.Obj()["resources"], wantJSON) // GET returns the same resources
		}
	}
	res := func(url, mount string) map[string]any {
		return map[string]any{"type": "github_repository", "url": url, "mount_path": mount}
	}
	a.Run(t, "", []apitest.Scenario{
		{Name: "11 resources", Method: "POST", Path: "/sessions", Token: tok, Body: body(repos(11)...), WantStatus: 422,
			Check: sessWantMsg("Maximum 10 resources per session", "resources")},
		{Name: "gitlab URL", Method: "POST", Path: "/sessions", Token: tok, Body: body(repo("https://gitlab.com/a/b")), WantStatus: 422,
			Check: sessWantMsg("Must be a valid https://github.com/<owner>/<repo> URL", "resources", 0, "url")},
		{Name: "http URL", Method: "POST", Path: "/sessions", Token: tok, Body: body(repo("http://github.com/a/b")), WantStatus: 422,
			Check: sessWantLoc("resources", 0, "url")},
		{Name: "URL with a deeper path", Method: "POST", Path: "/sessions", Token: tok, Body: body(repo("https://github.com/a/b/c")), WantStatus: 422,
			Check: sessWantLoc("resources", 0, "url")},
		{Name: "relative mount_path", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "mount_path", "work/b")), WantStatus: 422,
			Check: sessWantMsg("mount_path must be an absolute path", "resources", 0, "mount_path")},
		{Name: "mount_path /home/sprite", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "mount_path", "/home/sprite")), WantStatus: 422,
			Check: sessWantMsg("mount_path must not be the Sprite root", "resources", 0, "mount_path")},
		{Name: "mount_path /", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "mount_path", "/")), WantStatus: 422,
			Check: sessWantMsg("mount_path must not be the Sprite root", "resources", 0, "mount_path")},
		{Name: "duplicate explicit mount_path", Method: "POST", Path: "/sessions", Token: tok,
			Body:       body(repo("https://github.com/a/b", "mount_path", "/srv/x"), repo("https://github.com/a/c", "mount_path", "/srv/x")),
			WantStatus: 422, Check: sessWantMsg("Duplicate mount_path in resources", "resources")},
		{Name: "duplicate default mount_path", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b"), repo("https://github.com/c/b.git")), WantStatus: 422, Check: sessWantLoc("resources")},
		{Name: "missing url", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(map[string]any{"type": "github_repository"}), WantStatus: 422, Check: sessWantLoc("resources", 0, "url")},
		{Name: "wrong type", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(map[string]any{"type": "gitlab_repository", "url": "https://github.com/a/b"}), WantStatus: 422,
			Check: sessWantLoc("resources", 0, "type")},
		{Name: "resources not a list", Method: "POST", Path: "/sessions", Token: tok,
			Body: apitest.SessionBody(agent, "true", "resources", "https://github.com/a/b"), WantStatus: 422, Check: sessWantLoc("resources")},
		{Name: "a 422 never echoes the token", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "mount_path", "relative", "authorization_token", token)), WantStatus: 422,
			Check: noToken},
		{Name: "a 422 for a missing field never echoes the token", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(map[string]any{"type": "github_repository", "authorization_token": token}), WantStatus: 422, Check: noToken},
		{Name: "a 422 elsewhere in the body never echoes the token", Method: "POST", Path: "/sessions", Token: tok,
			Body:       map[string]any{"agent_id": agent, "resources": []any{repo("https://github.com/a/b", "authorization_token", token)}},
			WantStatus: 422, Check: noToken},
		{Name: "no resources", Method: "POST", Path: "/sessions", Token: tok, Body: apitest.SessionBody(agent, "true"), WantStatus: 202,
			Check: wantResources()},
		{Name: "10 resources", Method: "POST", Path: "/sessions", Token: tok, Body: body(repos(10)...), WantStatus: 202,
			Check: func(is *is.I, r apitest.Response) {
				rs, _ := r.Obj()["resources"].([]any)
				is.Equal(len(rs), 10) // all ten
				ids = append(ids, fmt.Sprint(r.Obj()["id"]))
			}},
		{Name: ".git stripped and default mount", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/acme/widgets.git")), WantStatus: 202,
			Check: wantResources(res("https://github.com/acme/widgets", "/workspace/widgets"))},
		{Name: "explicit mount and a token, in order", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/acme/private", "mount_path", "/srv/code", "authorization_token", token),
				repo("https://github.com/acme/public")), WantStatus: 202,
			Check: wantResources(res("https://github.com/acme/private", "/srv/code"), res("https://github.com/acme/public", "/workspace/public"))},
		{Name: "a checkout is stored and echoed", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/acme/lib", "checkout", "release/2.x", "authorization_token", token),
				repo("https://github.com/acme/app", "checkout", nil)), WantStatus: 202,
			Check: func(is *is.I, r apitest.Response) {
				noToken(is, r)
				want := []any{
					map[string]any{"type": "github_repository", "url": "https://github.com/acme/lib", "mount_path": "/workspace/lib", "checkout": "release/2.x"},
					map[string]any{"type": "github_repository", "url": "https://github.com/acme/app", "mount_path": "/workspace/app"},
				}
				is.Equal(r.Obj()["resources"], want) // the checkout echoed; none shown where none was asked for
				id, _ := r.Obj()["id"].(string)
				ids = append(ids, id)
				got := a.Do("GET", "/sessions/"+id, tok, nil)
				noToken(is, got)
				is.Equal(got.Obj()["resources"], want) // GET returns it too
			}},
		{Name: "checkout starting with -", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "checkout", "--upload-pack=x", "authorization_token", token)), WantStatus: 422,
			Check: func(is *is.I, r apitest.Response) {
				noToken(is, r)
				sessWantMsg("checkout must not start with '-'", "resources", 0, "checkout")(is, r)
			}},
		{Name: "checkout with ..", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "checkout", "a..b")), WantStatus: 422,
			Check: sessWantLoc("resources", 0, "checkout")},
		{Name: "checkout too long", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "checkout", strings.Repeat("x", 256))), WantStatus: 422,
			Check: sessWantMsg("checkout must be at most 255 characters", "resources", 0, "checkout")},
		{Name: "checkout not a string", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "checkout", []any{"main"})), WantStatus: 422,
			Check: sessWantLoc("resources", 0, "checkout")},
		{Name: "empty checkout", Method: "POST", Path: "/sessions", Token: tok,
			Body: body(repo("https://github.com/a/b", "checkout", "")), WantStatus: 422,
			Check: sessWantMsg("checkout must not be empty", "resources", 0, "checkout")},
		{Name: "the list never shows the token", Method: "GET", Path: "/sessions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				noToken(is, r)
				is.Equal(len(r.Data()), 5) // the five accepted sessions
			}},
	})
	// Repositories can't be cloned here; stop what is still provisioning.
	for _, id := range ids {
		if st := a.Session(tok, id)["status"]; st == "pending" || st == "running" {
			a.Do("POST", "/sessions/"+id+"/terminate", tok, nil)
		}
	}
}

func TestSessionSecretEnvVars(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	const secret = "zq-SECRET-value-6c1f9e"
	// The script compares without spelling the value: it must appear in no
	// response, the turn's prompt included.
	var escaped strings.Builder
	for _, b := range []byte(secret) {
		fmt.Fprintf(&escaped, `\x%02x`, b)
	}
	env, _ := a.MustCreate("/environments", tok, map[string]any{"name": "vars",
		"env_vars": map[string]any{"FROM_ENV": "env-value-1", "SHARED": "from-environment"}})["id"].(string)

	bad := a.Do("POST", "/sessions", tok, apitest.SessionBody(agent, "true", "secret_env_vars", map[string]any{"BAD-NAME": secret}))
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // an invalid name is a 422
	is.True(strings.Contains(bad.Detail(), "BAD-NAME"))  // naming the key
	is.True(!strings.Contains(string(bad.Raw), secret))  // but never the value
	bad = a.Do("POST", "/sessions", tok, apitest.SessionBody(agent, "", "secret_env_vars", map[string]any{"OK": secret}))
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // a 422 for another field
	is.True(!strings.Contains(string(bad.Raw), secret))  // never echoes a secret either
	bad = a.Do("POST", "/sessions", tok, map[string]any{"agent_id": agent, "secret_env_vars": map[string]any{"OK": secret}})
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // missing prompt
	is.True(!strings.Contains(string(bad.Raw), secret))  // the 422's input hides the secret
	bad = a.Do("POST", "/sessions", tok, apitest.SessionBody(agent, "true", "secret_env_vars", map[string]any{"OK": 5}))
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // a value that is not a string

	script := `test "$MY_SECRET" = "$(printf '` + escaped.String() + `')" && echo ok
echo "env=$FROM_ENV shared=$SHARED"`
	r := a.Do("POST", "/sessions", tok, apitest.SessionBody(agent, script, "environment_id", env,
		"secret_env_vars", map[string]any{"MY_SECRET": secret, "SHARED": "from-secret"}))
	is.Equal(r.Status, http.StatusAccepted)           // accepted
	is.True(!strings.Contains(string(r.Raw), secret)) // the ack doesn't show the secret
	id, _ := r.Obj()["id"].(string)
	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit")                                           // the session ran
	is.Equal(s.Last().Data["code"], float64(0))                                 // and succeeded
	is.Equal(s.Output("stdout", 1), "ok\nenv=env-value-1 shared=from-secret\n") // the secret and the environment's vars reach the process, secrets winning
	is.True(!strings.Contains(string(s.Raw), secret))                           // the stream doesn't show the secret

	for _, path := range []string{"/sessions/" + id, "/sessions", "/sessions/" + id + "/turns"} {
		got := a.Do("GET", path, tok, nil)
		is.Equal(got.Status, http.StatusOK)                 // readable
		is.True(!strings.Contains(string(got.Raw), secret)) // never shows the secret
	}
	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil).Data()
	is.Equal(turns[0].(map[string]any)["prompt"], script) // the turn keeps the prompt as sent
}

// ---------------------------------------------------------------- reads

func TestSessionList(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	is := is.New(t)
	r := a.Do("GET", "/sessions", tok, nil)
	is.Equal(r.Status, http.StatusOK)                         // an empty list
	is.Equal(r.Obj(), map[string]any{"data": []any{}})        // is {"data": []}
	is.Equal(strings.TrimSpace(string(r.Raw)), `{"data":[]}`) // with an empty array, not null

	agent := a.ShellAgent(tok)
	completed := a.StartSession(tok, apitest.SessionBody(agent, "echo done"))
	failed := a.StartSession(tok, apitest.SessionBody(agent, "exit 4"))
	terminated := a.StartSession(tok, apitest.SessionBody(agent, "sleep 30"))
	a.WaitStatus(tok, terminated, "running")
	is.Equal(a.Do("POST", "/sessions/"+terminated+"/terminate", tok, nil).Status, http.StatusOK) // terminate the third
	running := a.StartSession(tok, apitest.SessionBody(agent, "sleep 30"))
	a.WaitStatus(tok, running, "running")
	a.Finish(tok, completed)
	a.Finish(tok, failed)
	bobs := a.StartSession(bob, apitest.SessionBody(a.ShellAgent(bob), "true"))

	r = a.Do("GET", "/sessions", tok, nil)
	is.Equal(r.Status, http.StatusOK) // list
	var ids, statuses []string
	for _, it := range r.Data() {
		m, _ := it.(map[string]any)
		is.Equal(sessKeys(m), sessSessionKeys) // each item is exactly the session shape, no prompt
		ids = append(ids, fmt.Sprint(m["id"]))
		statuses = append(statuses, fmt.Sprint(m["status"]))
	}
	is.Equal(ids, []string{running, terminated, failed, completed})              // newest first, only the caller's
	is.Equal(statuses, []string{"running", "terminated", "failed", "completed"}) // every status is listed
	is.True(!strings.Contains(string(r.Raw), `"prompt"`))                        // no prompt anywhere

	r = a.Do("GET", "/sessions", bob, nil)
	is.Equal(len(r.Data()), 1)                                                                // bob sees one session
	is.Equal(r.Data()[0].(map[string]any)["id"], bobs)                                        // his own
	is.Equal(a.Do("POST", "/sessions/"+running+"/terminate", tok, nil).Status, http.StatusOK) // clean up
}

func TestSessionGet(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	env, _ := a.MustCreate("/environments", tok, map[string]any{"name": "e"})["id"].(string)
	agent := a.ShellAgent(tok, "environment_id", env)
	id := a.StartSession(tok, apitest.SessionBody(agent, "echo hi"))
	a.Finish(tok, id)
	a.Run(t, id, []apitest.Scenario{
		{Name: "own session", Method: "GET", Path: "/sessions/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				got := r.Obj()
				is.Equal(sessKeys(got), sessSessionKeys)  // exactly the contract's keys
				is.Equal(got["id"], id)                   // id
				is.Equal(got["agent_id"], agent)          // agent_id
				is.Equal(got["environment_id"], env)      // environment_id
				is.Equal(got["runtime"], "shell")         // runtime
				is.Equal(got["provider"], "local")        // provider of the shell runtime
				is.Equal(got["status"], "completed")      // status
				is.Equal(got["exit_code"], float64(0))    // exit_code
				is.Equal(got["resources"], []any{})       // resources
				is.Equal(got["turn_count"], float64(1))   // turn_count
				is.Equal(got["current_turn"], float64(1)) // current_turn
				for _, k := range []string{"created_at", "updated_at"} {
					is.True(wireTimePattern.MatchString(fmt.Sprint(got[k]))) // timestamps in the contract's format
				}
			}},
		{Name: "upper-case id", Method: "GET", Path: "/sessions/" + strings.ToUpper(id), Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["id"], id) // the canonical id
			}},
		{Name: "another user's", Method: "GET", Path: "/sessions/{id}", Token: bob, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "unknown", Method: "GET", Path: "/sessions/" + sessMissingID, Token: tok, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "not a UUID", Method: "GET", Path: "/sessions/not-a-uuid", Token: tok, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "turns of another user's", Method: "GET", Path: "/sessions/{id}/turns", Token: bob, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "turns of unknown", Method: "GET", Path: "/sessions/" + sessMissingID + "/turns", Token: tok, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "turns of not a UUID", Method: "GET", Path: "/sessions/nope/turns", Token: tok, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "egress of another user's", Method: "GET", Path: "/sessions/{id}/egress", Token: bob, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "egress of unknown", Method: "GET", Path: "/sessions/" + sessMissingID + "/egress", Token: tok, WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "egress unauthenticated", Method: "GET", Path: "/sessions/{id}/egress", Token: "", WantStatus: 401},
	})
}

// The egress record lists what the proxy saw, most recent first, with
// counts; an empty record is an empty list.
func TestSessionEgress(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	is := is.New(t)
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo hi"))
	a.Finish(tok, id)
	r := a.Do("GET", "/sessions/"+id+"/egress", tok, nil)
	is.Equal(r.Status, http.StatusOK)           // readable
	is.Equal(string(r.Raw), `{"data":[]}`+"\n") // empty, not null
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	is.NoErr(a.DB.RecordEgress(context.Background(), id, []store.EgressHit{
		{Host: "registry.npmjs.org", Port: 443, Allowed: true, Count: 3, At: t0},
		{Host: "evil.test", Port: 80, Allowed: false, Count: 1, At: t0.Add(time.Minute)},
	}))
	is.NoErr(a.DB.RecordEgress(context.Background(), id, []store.EgressHit{{Host: "registry.npmjs.org", Port: 443, Allowed: true, Count: 2, At: t0.Add(2 * time.Minute)}}))
	data := a.Do("GET", "/sessions/"+id+"/egress", tok, nil).Data()
	is.Equal(len(data), 2) // one row per host, port and verdict
	first := data[0].(map[string]any)
	is.Equal(first["host"], "registry.npmjs.org") // the most recent first
	is.Equal(first["port"], float64(443))
	is.Equal(first["allowed"], true)
	is.Equal(first["count"], float64(5))                                // counts add up
	is.Equal(first["first_at"], store.FormatTime(t0))                   // first seen
	is.Equal(first["last_at"], store.FormatTime(t0.Add(2*time.Minute))) // last seen
	second := data[1].(map[string]any)
	is.Equal(second["allowed"], false) // a refusal is listed too
}

// The provisioning log is the setup script's stdout and stderr as plain
// text, empty for a session whose provisioning ran no script. A failed
// provisioning also shows in the stream as the original's stderr output
// row (with its turn_start) before the error event.
func TestSessionProvisionLog(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	env := func(name, setup string) string {
		id, _ := a.MustCreate("/environments", tok, map[string]any{"name": name, "setup_script": setup})["id"].(string)
		return id
	}
	const failure = "Provisioning script failed: exit 4\nstderr:\nno <luck>\n"
	tests := []struct {
		name    string
		envID   string // "" = none
		wantLog string
		failed  bool
	}{
		{"no environment, no log", "", "", false},
		{"a setup script's output", env("ok", "echo provisioned-ok\nsleep 0.05\necho 'a warning' >&2"), "provisioned-ok\na warning\n", false},
		{"a failed setup script", env("broken", "echo trying\nsleep 0.05\necho 'no <luck>' >&2\nexit 4"), "trying\nno <luck>\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			body := apitest.SessionBody(agent, "echo ran")
			if tt.envID != "" {
				body["environment_id"] = tt.envID
			}
			id := a.StartSession(tok, body)
			s := a.Finish(tok, id)
			r := a.Do("GET", "/sessions/"+id+"/provision-log", tok, nil)
			is.Equal(r.Status, http.StatusOK)                                   // readable
			is.Equal(r.Header.Get("Content-Type"), "text/plain; charset=utf-8") // as plain text
			is.Equal(r.Header.Get("X-Content-Type-Options"), "nosniff")         // never sniffed as HTML
			// stdout and stderr come through pipes of their own, so lines
			// written close together may swap: the lines, not their order.
			lines := func(s string) []string { l := strings.SplitAfter(s, "\n"); slices.Sort(l); return l }
			is.Equal(lines(string(r.Raw)), lines(tt.wantLog)) // the script's output, verbatim
			if !tt.failed {
				is.Equal(s.Last().Type(), "exit") // the session ran
				return
			}
			types := s.Types()
			is.Equal(types[len(types)-3:], []string{"turn_start", "output", "error"}) // the failure row, then the error
			is.Equal(s.Output("stderr", 1), "provision failed: "+failure+"\n")        // the original's stderr row, in turn 1
			is.Equal(s.Last().Str("message"), "Session failed: "+failure)             // the error event as before
		})
	}
}

// ---------------------------------------------------------------- lifecycle

func TestSessionMultiTurn(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok, "system", "echo sys-marker-7f3")
	id := a.StartSession(tok, apitest.SessionBody(agent, "echo remembered > note.txt\necho turn-one"))

	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit")           // turn 1 ends
	is.Equal(s.Last().Data["code"], float64(0)) // with exit 0
	got := a.Session(tok, id)
	is.Equal(got["status"], "completed")   // completed
	is.Equal(got["exit_code"], float64(0)) // exit_code 0
	is.Equal(got["provider"], "local")     // the shell agent's provider

	r := a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "cat note.txt", "timeout": 60})
	is.Equal(r.Status, http.StatusAccepted) // a completed session takes a prompt
	wantAck := map[string]any{"id": id, "status": "pending", "stream_url": "/sessions/" + id + "/stream", "current_turn": float64(2)}
	is.Equal(r.Obj(), wantAck)                     // the prompt ack exactly
	is.Equal(sessKeys(r.Obj()), sessPromptAckKeys) // and nothing else

	s = a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit")                             // turn 2 ends
	is.Equal(s.Last().Data["code"], float64(0))                   // with exit 0
	is.Equal(s.Output("stdout", 1), "sys-marker-7f3\nturn-one\n") // turn 1 ran the system prompt, then the prompt
	is.Equal(s.Output("stdout", 2), "remembered\n")               // turn 2 sees turn 1's file, without the system prompt
	var turnStarts []float64
	for _, e := range s.Events {
		if e.Type() == "turn_start" {
			turnStarts = append(turnStarts, e.Data["turn"].(float64))
		}
	}
	is.Equal(turnStarts, []float64{1, 2}) // one turn_start per turn

	got = a.Session(tok, id)
	is.Equal(got["status"], "completed")      // completed again
	is.Equal(got["turn_count"], float64(2))   // two turns
	is.Equal(got["current_turn"], float64(2)) // the current one is 2

	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil)
	is.Equal(turns.Status, http.StatusOK) // turns
	is.Equal(len(turns.Data()), 2)        // both
	for i, want := range []string{"echo remembered > note.txt\necho turn-one", "cat note.txt"} {
		turn, _ := turns.Data()[i].(map[string]any)
		is.Equal(sessKeys(turn), sessTurnKeys)      // exactly the turn shape
		is.Equal(turn["turn_number"], float64(i+1)) // ordered by number
		is.Equal(turn["prompt"], want)              // each with its own raw prompt
		is.Equal(turn["status"], "completed")       // completed
		is.Equal(turn["exit_code"], float64(0))     // exit 0
		for _, k := range []string{"created_at", "started_at", "ended_at"} {
			is.True(wireTimePattern.MatchString(fmt.Sprint(turn[k]))) // timestamps set, in the contract's format
		}
	}
}

func TestSessionPromptValidation(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	agent := a.ShellAgent(tok)
	id := a.StartSession(tok, apitest.SessionBody(agent, "true"))
	a.Finish(tok, id)
	a.Run(t, id, []apitest.Scenario{
		{Name: "invalid JSON", Method: "POST", Path: "/sessions/{id}/prompt", Token: tok, Body: `{"prompt"`, WantStatus: 400,
			Check: sessExactDetail("Invalid JSON")},
		{Name: "missing prompt", Method: "POST", Path: "/sessions/{id}/prompt", Token: tok, Body: map[string]any{}, WantStatus: 422,
			Check: sessWantLoc("prompt")},
		{Name: "empty prompt", Method: "POST", Path: "/sessions/{id}/prompt", Token: tok, Body: map[string]any{"prompt": ""}, WantStatus: 422,
			Check: sessWantLoc("prompt")},
		{Name: "timeout 5", Method: "POST", Path: "/sessions/{id}/prompt", Token: tok, Body: map[string]any{"prompt": "true", "timeout": 5},
			WantStatus: 422, Check: sessWantLoc("timeout")},
		{Name: "timeout soon", Method: "POST", Path: "/sessions/{id}/prompt", Token: tok, Body: map[string]any{"prompt": "true", "timeout": "soon"},
			WantStatus: 422, Check: sessWantLoc("timeout")},
		{Name: "unknown session", Method: "POST", Path: "/sessions/" + sessMissingID + "/prompt", Token: tok, Body: map[string]any{"prompt": "true"},
			WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "another user's session", Method: "POST", Path: "/sessions/{id}/prompt", Token: bob, Body: map[string]any{"prompt": "true"},
			WantStatus: 404, Check: sessExactDetail("Session not found")},
		{Name: "nothing was queued", Method: "GET", Path: "/sessions/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["turn_count"], float64(1)) // still one turn
				is.Equal(r.Obj()["status"], "completed")    // still completed
			}},
		{Name: "a valid prompt", Method: "POST", Path: "/sessions/{id}/prompt", Token: tok, Body: map[string]any{"prompt": "true"},
			WantStatus: 202, Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["current_turn"], float64(2)) // turn 2
			}},
	})
	is.New(t).Equal(a.Finish(tok, id).Last().Type(), "exit") // turn 2 runs
}

func TestSessionPendingAndRunningConflicts(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, MaxRunning: 1})
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	running := a.StartSession(tok, apitest.SessionBody(agent, "sleep 30"))
	a.WaitStatus(tok, running, "running")
	pending := a.StartSession(tok, apitest.SessionBody(agent, "echo second"))
	is.New(t).Equal(a.Session(tok, pending)["status"], "pending") // the only runner slot is taken: it waits

	a.Run(t, "", []apitest.Scenario{
		{Name: "prompt while running", Method: "POST", Path: "/sessions/" + running + "/prompt", Token: tok,
			Body: map[string]any{"prompt": "true"}, WantStatus: 409, Check: sessExactDetail("Session is already running")},
		{Name: "prompt while running, state before body", Method: "POST", Path: "/sessions/" + running + "/prompt", Token: tok,
			Body: `{bad`, WantStatus: 409, Check: sessExactDetail("Session is already running")},
		{Name: "delete while running", Method: "DELETE", Path: "/sessions/" + running + "/delete", Token: tok,
			WantStatus: 409, Check: sessExactDetail("Cannot delete an active session")},
		{Name: "prompt while pending", Method: "POST", Path: "/sessions/" + pending + "/prompt", Token: tok,
			Body: map[string]any{"prompt": "true"}, WantStatus: 409, Check: sessExactDetail("Session already has a pending turn")},
		{Name: "delete while pending", Method: "DELETE", Path: "/sessions/" + pending + "/delete", Token: tok,
			WantStatus: 409, Check: sessExactDetail("Cannot delete an active session")},
		{Name: "no turn was added", Method: "GET", Path: "/sessions/" + pending + "/turns", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 1) // one turn
			}},
		{Name: "terminate while pending", Method: "POST", Path: "/sessions/" + pending + "/terminate", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"id": pending, "status": "terminated"}) // exactly {id, status}
			}},
		{Name: "terminate while running", Method: "POST", Path: "/sessions/" + running + "/terminate", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"id": running, "status": "terminated"}) // exactly {id, status}
			}},
	})
	is := is.New(t)
	// A session queued behind the terminated one runs: the terminated one
	// no longer holds the queue. (It also means the runner has let go of
	// the terminated job before the test's cleanup shuts it down.)
	next := a.StartSession(tok, apitest.SessionBody(agent, "echo next"))
	is.Equal(a.Finish(tok, next).Output("stdout", 1), "next\n") // the next session ran
	s := a.Finish(tok, pending)
	is.Equal(s.Last().Type(), "terminated") // the pending session's stream ends terminated
	is.Equal(s.Output("stdout", 0), "")     // its turn never ran
	turns := a.Do("GET", "/sessions/"+pending+"/turns", tok, nil).Data()
	is.Equal(turns[0].(map[string]any)["status"], "failed")   // its queued turn ended failed (a turn status the SDK knows)
	is.Equal(a.Session(tok, pending)["status"], "terminated") // and the session stays terminated
}

func TestSessionFailedExit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	id := a.StartSession(tok, apitest.SessionBody(agent, "echo out; echo err >&2; exit 3"))
	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit")           // a non-zero exit ends with exit
	is.Equal(s.Last().Data["code"], float64(3)) // carrying the code
	is.Equal(s.Output("stdout", 1), "out\n")    // stdout
	is.Equal(s.Output("stderr", 1), "err\n")    // stderr, separately
	got := a.Session(tok, id)
	is.Equal(got["status"], "failed")      // failed
	is.Equal(got["exit_code"], float64(3)) // with exit_code 3
	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil).Data()
	is.Equal(turns[0].(map[string]any)["exit_code"], float64(3)) // the turn has the code too
	is.Equal(turns[0].(map[string]any)["status"], "failed")      // and failed

	r := a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "true"})
	is.Equal(r.Status, http.StatusConflict)                                                                       // a failed session takes no prompt
	is.Equal(r.Obj(), map[string]any{"detail": "Session has failed and cannot be resumed. Start a new session."}) // exact detail
	r = a.Do("POST", "/sessions/"+id+"/terminate", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                   // a failed session can be terminated
	is.Equal(r.Obj(), map[string]any{"id": id, "status": "terminated"}) // exactly {id, status}
	r = a.Do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                              // then deleted
	is.Equal(r.Obj(), map[string]any{"detail": "Session deleted"}) // exact body

	// A failed session can be deleted without terminating it first.
	other := a.StartSession(tok, apitest.SessionBody(agent, "exit 1"))
	a.Finish(tok, other)
	r = a.Do("DELETE", "/sessions/"+other+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                               // delete a failed session
	is.Equal(a.Do("GET", "/sessions/"+other, tok, nil).Status, http.StatusNotFound) // gone
}

func TestSessionTerminateRunning(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	id := a.StartSession(tok, apitest.SessionBody(agent, "echo started\nsleep 1000 & sleep 1000"))
	early := a.Stream(tok, id, apitest.StreamOptions{Stop: func(e testkit.Frame) bool { return e.Type() == "output" }})
	is.Equal(early.Output("stdout", 1), "started\n") // the turn is under way
	is.True(sessWaitProcs(id, "sleep", 2))           // the script and its background child are running

	status, body, err := sessDoWithin(a, 10*time.Second, "POST", "/sessions/"+id+"/terminate", tok)
	is.NoErr(err)                                                    // terminate answers at once, not when the sleeps end
	is.Equal(status, http.StatusOK)                                  // 200
	is.Equal(body, map[string]any{"id": id, "status": "terminated"}) // exactly {id, status}
	is.Equal(sessWaitNoProcs(id, 10*time.Second), []string(nil))     // every process of the turn is gone, the background sleep too

	got := a.Session(tok, id)
	is.Equal(got["status"], "terminated") // terminated
	r := a.Do("POST", "/sessions/"+id+"/terminate", tok, nil)
	is.Equal(r.Status, http.StatusConflict)                                      // terminate again
	is.Equal(r.Obj(), map[string]any{"detail": "Session is already terminated"}) // exact detail
	r = a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "true"})
	is.Equal(r.Status, http.StatusConflict)                                    // prompt a terminated session
	is.Equal(r.Obj(), map[string]any{"detail": "Session has been terminated"}) // exact detail

	s := a.Finish(tok, id)
	is.Equal(s.Events[0].Type(), "start")                    // the replay starts with start
	is.Equal(s.Last().Type(), "terminated")                  // and ends with terminated
	is.Equal(s.Last().Data["message"], "Session terminated") // the contract's message
	is.Equal(s.Output("stdout", 1), "started\n")             // the output before the terminate is kept
	is.True(s.Closed)                                        // the stream closed
	is.Equal(a.Session(tok, id)["status"], "terminated")     // the ended turn did not overwrite the status

	r = a.Do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                              // delete
	is.Equal(r.Obj(), map[string]any{"detail": "Session deleted"}) // exact body
	r = a.Do("GET", "/sessions/"+id, tok, nil)
	is.Equal(r.Status, http.StatusNotFound)                                                // gone
	is.Equal(r.Obj(), map[string]any{"detail": "Session not found"})                       // exact detail
	is.Equal(a.Do("GET", "/sessions/"+id+"/turns", tok, nil).Status, http.StatusNotFound)  // turns gone
	is.Equal(a.Do("GET", "/sessions/"+id+"/stream", tok, nil).Status, http.StatusNotFound) // stream gone
	r = a.Do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusNotFound) // delete again
	is.Equal(a.SessionCount(tok), 0)        // the list is empty
}

func TestSessionTerminateCompleted(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo done"))
	is.Equal(a.Finish(tok, id).Last().Type(), "exit") // completed
	r := a.Do("POST", "/sessions/"+id+"/terminate", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                   // a completed session can be terminated
	is.Equal(r.Obj(), map[string]any{"id": id, "status": "terminated"}) // exactly {id, status}
	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "terminated")   // its stream now ends terminated
	is.Equal(s.Output("stdout", 1), "done\n") // after replaying the output
	r = a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "true"})
	is.Equal(r.Detail(), "Session has been terminated") // no more prompts
	r = a.Do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK) // delete
}

func TestSessionDeleteCompleted(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo done"))
	a.Finish(tok, id)
	r := a.Do("DELETE", "/sessions/"+id+"/delete", bob, nil)
	is.Equal(r.Status, http.StatusNotFound)                          // not bob's
	is.Equal(r.Obj(), map[string]any{"detail": "Session not found"}) // exact detail
	r = a.Do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                                                    // a completed session is deleted without terminate
	is.Equal(r.Obj(), map[string]any{"detail": "Session deleted"})                                       // exact body
	is.Equal(a.Do("GET", "/sessions/"+id, tok, nil).Status, http.StatusNotFound)                         // gone
	is.Equal(a.Do("DELETE", "/sessions/"+sessMissingID+"/delete", tok, nil).Status, http.StatusNotFound) // unknown
}

func TestSessionTimeout(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	// The API's shortest timeout is ten seconds (validate's tests hold that
	// bound); the runner enforces whatever the turn says, so this turn is
	// stored with two and queued as the session service would.
	ctx := context.Background()
	u, err := a.DB.UserByName(ctx, "alice")
	is.NoErr(err) // the token's user
	m, err := store.ResolveModel("shell", "", store.ShellModel)
	is.NoErr(err) // the shell runtime
	ag, err := a.DB.CreateAgent(ctx, u.ID, store.AgentInput{Name: "sh", Model: m})
	is.NoErr(err) // an agent
	sess, err := a.DB.CreateSession(ctx, u.ID, store.SessionInput{AgentID: ag.ID, Prompt: "echo begin\nsleep 1000 & sleep 1000", Timeout: 2})
	is.NoErr(err) // a session whose turn may run two seconds
	a.Runner.Enqueue(sess.ID)
	id := sess.ID
	is.True(sessWaitProcs(id, "sleep", 2)) // the script and its background child are running
	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "error")                                            // a timed-out turn ends with error
	is.Equal(s.Last().Data["message"], "Session failed: turn timed out after 2s") // with the reason
	is.Equal(s.Output("stdout", 1), "begin\n")                                    // its output is kept
	got := a.Session(tok, id)
	is.Equal(got["status"], "failed") // failed
	is.Equal(got["exit_code"], nil)   // without an exit code
	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil).Data()
	is.Equal(turns[0].(map[string]any)["status"], "failed")      // the turn failed
	is.Equal(turns[0].(map[string]any)["exit_code"], nil)        // without an exit code
	is.Equal(sessWaitNoProcs(id, 10*time.Second), []string(nil)) // the background sleep was killed too
}

// ---------------------------------------------------------------- stream

func TestSessionStreamErrors(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo hi"))

	for _, c := range []struct {
		name, tok, path string
	}{
		{"unknown", tok, sessMissingID},
		{"not a UUID", tok, "nope"},
		{"another user's", bob, id},
	} {
		s := a.Stream(c.tok, c.path, apitest.StreamOptions{})
		is.Equal(s.Status, http.StatusNotFound)                                     // 404 before streaming
		is.Equal(s.Body, map[string]any{"detail": "Session not found"})             // JSON detail
		is.True(strings.Contains(s.Header.Get("Content-Type"), "application/json")) // JSON content type, not an event stream
	}
	for _, c := range []struct {
		name, query string
		headers     map[string]string
	}{
		{"since=abc", "?since=abc", nil},
		{"since=1.5", "?since=1.5", nil},
		{"Last-Event-ID x", "", map[string]string{"Last-Event-ID": "x"}},
		{"Last-Event-ID x wins over a good since", "?since=1", map[string]string{"Last-Event-ID": "x"}},
	} {
		s := a.Stream(tok, id, apitest.StreamOptions{Query: c.query, Header: c.headers})
		is.Equal(s.Status, http.StatusBadRequest)                                   // a non-integer cursor is a 400
		is.Equal(s.Body, map[string]any{"detail": "since must be an integer"})      // exact body
		is.True(strings.Contains(s.Header.Get("Content-Type"), "application/json")) // as JSON
	}
	s := a.Finish(tok, id)
	is.Equal(s.Header.Get("Content-Type"), "text/event-stream") // exactly text/event-stream
	is.Equal(s.Header.Get("Cache-Control"), "no-cache")         // no-cache
	is.Equal(s.Header.Get("X-Accel-Buffering"), "no")           // no proxy buffering
	s = a.Stream(tok, id, apitest.StreamOptions{Query: "?since=-5"})
	is.Equal(s.Status, http.StatusOK)       // a negative cursor clamps to 0
	is.Equal(s.Output("stdout", 1), "hi\n") // and replays everything
	s = a.Stream(tok, id, apitest.StreamOptions{Query: "?since=1", Header: map[string]string{"Last-Event-ID": "999999"}})
	is.Equal(s.Status, http.StatusOK)              // the header wins over since
	is.Equal(s.Output("stdout", 0), "")            // nothing after id 999999
	is.Equal(s.Types(), []string{"start", "exit"}) // just start and the terminal event
}

// TestSessionQuickstart follows api.md §9 with the shell agent: create an
// agent, a session with a timeout of 120, stream it, archive the agent.
func TestSessionQuickstart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	agentRes := a.Do("POST", "/agents", tok, map[string]any{"name": "hello", "model": "local/shell", "runtime": "shell"})
	is.Equal(agentRes.Status, http.StatusCreated) // the agent
	agent, _ := agentRes.Obj()["id"].(string)

	r := a.Do("POST", "/sessions", tok, map[string]any{"agent_id": agent, "prompt": "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.2; done", "timeout": 120})
	is.Equal(r.Status, http.StatusAccepted) // the session
	id, _ := r.Obj()["id"].(string)

	s := a.Stream(tok, id, apitest.StreamOptions{})
	is.Equal(s.Status, http.StatusOK)                                     // streaming
	is.True(s.Closed)                                                     // the server closes the stream after the terminal event
	is.True(strings.HasPrefix(string(s.Raw), `data: {"type": "start", `)) // start first, json.dumps style, no id: line
	first := s.Events[0]
	is.Equal(first.Type(), "start")           // start
	is.Equal(first.Data["session_id"], id)    // names the session
	is.Equal(first.Data["provider"], "local") // and the provider
	is.Equal(first.Data["runtime"], "shell")  // and the runtime
	is.Equal(first.ID, "")                    // without an id: line

	// start, stage events, turn_start, outputs, exit.
	var phase []string
	for _, e := range s.Events[1:] {
		if len(phase) == 0 || phase[len(phase)-1] != e.Type() {
			phase = append(phase, e.Type())
		}
	}
	is.Equal(phase, []string{"stage", "turn_start", "output", "exit"}) // the events in the contract's order
	var stages []string
	var lastID int64
	var outputs []testkit.Frame
	for i, e := range s.Events[1:] {
		switch e.Type() {
		case "stage":
			stages = append(stages, fmt.Sprint(e.Data["stage"], ":", e.Data["state"]))
			if e.Data["state"] == "done" {
				_, ok := e.Data["duration_ms"].(float64)
				is.True(ok) // done stages carry duration_ms
			}
		case "turn_start":
			is.Equal(e.ID, "")                             // turn_start has no id: line
			is.Equal(e.Data["turn"], float64(1))           // for turn 1
			is.Equal(e.EventID(), s.Events[i+2].EventID()) // its id is the next output's
		case "output":
			outputs = append(outputs, e)
			is.Equal(e.Data["turn"], float64(1)) // output of turn 1
		}
		if e.Type() != "turn_start" && !testkit.IsTerminal(e.Type()) {
			is.Equal(e.ID, strconv.FormatInt(e.EventID(), 10)) // the id: line is the JSON id
			is.True(e.EventID() > lastID)                      // ids increase
			lastID = e.EventID()
		}
		is.True(strings.HasPrefix(e.Text, `{"type": `)) // type is the first key
	}
	is.Equal(stages[0], "create_sprite:started")             // provisioning starts with create_sprite
	is.Equal(stages[len(stages)-1], "runtime_start:started") // and ends with runtime_start
	exit := s.Last()
	is.Equal(exit.Data["code"], float64(0))                                             // exit code 0
	is.Equal(exit.EventID(), lastID)                                                    // the terminal id repeats the last row id
	is.Equal(exit.ID, strconv.FormatInt(lastID, 10))                                    // on its id: line too
	is.Equal(s.Output("stdout", 1), "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n") // the script's output
	is.True(len(outputs) >= 4)                                                          // printed over time, the lines arrive as several events

	// Re-stream after completion replays start, output and exit.
	again := a.Stream(tok, id, apitest.StreamOptions{})
	is.Equal(again.Types(), s.Types())         // the same events
	is.Equal(string(again.Raw), string(s.Raw)) // byte for byte

	// Reconnect after the third output: only later events.
	third := outputs[2].ID
	resumed := a.Stream(tok, id, apitest.StreamOptions{Header: map[string]string{"Last-Event-ID": third}})
	is.Equal(resumed.Events[0].Type(), "start") // a resume starts with start
	cut, _ := strconv.ParseInt(third, 10, 64)
	for _, e := range resumed.Events[1:] {
		if e.Type() != "turn_start" && !testkit.IsTerminal(e.Type()) {
			is.True(e.EventID() > cut) // only events after the cursor
		}
	}
	is.Equal(resumed.Events[1].Type(), "turn_start") // a resume re-announces the turn
	is.Equal(resumed.Last().Type(), "exit")          // and ends with exit
	var rest strings.Builder
	for _, o := range outputs[3:] {
		rest.WriteString(o.Data["data"].(string))
	}
	is.Equal(resumed.Output("stdout", 1), rest.String()) // exactly the output after the third event
	viaSince := a.Stream(tok, id, apitest.StreamOptions{Query: "?since=" + third})
	is.Equal(string(viaSince.Raw), string(resumed.Raw)) // ?since= resumes the same way

	arch := a.Do("POST", "/agents/"+agent+"/archive", tok, nil)
	is.Equal(arch.Status, http.StatusOK)                // archive the agent
	is.True(arch.Obj()["archived_at"] != nil)           // archived
	is.Equal(a.Session(tok, id)["status"], "completed") // the session is unaffected
}

// ---------------------------------------------------------------- routes

func TestSessionMethodNotAllowed(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	notAllowed := func(allow string) func(*is.I, apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			is.Equal(r.Obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405 body
			is.True(strings.Contains(r.Header.Get("Allow"), allow))           // Allow names the route's method
		}
	}
	rows := []apitest.Scenario{
		{Name: "PATCH /sessions", Method: "PATCH", Path: "/sessions", WantStatus: 405, Check: notAllowed("POST")},
		{Name: "DELETE /sessions", Method: "DELETE", Path: "/sessions", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "DELETE /sessions/{id}", Method: "DELETE", Path: "/sessions/{id}", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "POST /sessions/{id}/delete", Method: "POST", Path: "/sessions/{id}/delete", WantStatus: 405, Check: notAllowed("DELETE")},
		{Name: "GET /sessions/{id}/terminate", Method: "GET", Path: "/sessions/{id}/terminate", WantStatus: 405, Check: notAllowed("POST")},
		{Name: "GET /sessions/{id}/prompt", Method: "GET", Path: "/sessions/{id}/prompt", WantStatus: 405, Check: notAllowed("POST")},
		{Name: "POST /sessions/{id}/stream", Method: "POST", Path: "/sessions/{id}/stream", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "POST /sessions/{id}/turns", Method: "POST", Path: "/sessions/{id}/turns", WantStatus: 405, Check: notAllowed("GET")},
	}
	var all []apitest.Scenario
	for _, sc := range rows {
		all = append(all, sc)
		bad := sc
		bad.Name += " with an invalid token"
		bad.Token = "aod_invalid_key"
		all = append(all, bad)
	}
	a.Run(t, sessMissingID, all)
}

func TestSessionAuthRequired(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "true"))
	a.Finish(tok, id)
	unauthorized := func(is *is.I, r apitest.Response) {
		d, _ := r.Obj()["detail"].(string)
		is.True(d != "") // a JSON detail
	}
	var rows []apitest.Scenario
	for _, c := range []struct{ method, path string }{
		{"POST", "/sessions"}, {"GET", "/sessions"}, {"GET", "/sessions/{id}"}, {"GET", "/sessions/{id}/turns"},
		{"POST", "/sessions/{id}/prompt"}, {"POST", "/sessions/{id}/terminate"}, {"DELETE", "/sessions/{id}/delete"},
		{"GET", "/sessions/{id}/stream"}, {"GET", "/sessions/{id}/provision-log"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"prompt": "true"}
		}
		for _, tk := range []struct{ name, token string }{{"no token", ""}, {"invalid token", "aod_invalid_key"}} {
			rows = append(rows, apitest.Scenario{Name: c.method + " " + c.path + " " + tk.name, Method: c.method, Path: c.path,
				Token: tk.token, Body: body, WantStatus: 401, Check: unauthorized})
		}
	}
	rows = append(rows, apitest.Scenario{Name: "nothing changed", Method: "GET", Path: "/sessions/{id}", Token: tok, WantStatus: 200,
		Check: func(is *is.I, r apitest.Response) {
			is.Equal(r.Obj()["status"], "completed")    // not terminated
			is.Equal(r.Obj()["turn_count"], float64(1)) // no prompt queued
		}})
	a.Run(t, id, rows)
}

func TestSessionOwnership(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, running)
	tok := a.Token("alice")
	bob := a.Token("bob")
	a.ShellAgent(bob) // bob exists and has an agent of his own
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo mine"))
	a.Finish(tok, id)
	notFound := sessExactDetail("Session not found")
	a.Run(t, id, []apitest.Scenario{
		{Name: "GET", Method: "GET", Path: "/sessions/{id}", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "turns", Method: "GET", Path: "/sessions/{id}/turns", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "prompt", Method: "POST", Path: "/sessions/{id}/prompt", Token: bob, Body: map[string]any{"prompt": "true"}, WantStatus: 404, Check: notFound},
		{Name: "prompt with a bad body", Method: "POST", Path: "/sessions/{id}/prompt", Token: bob, Body: `{bad`, WantStatus: 404, Check: notFound},
		{Name: "terminate", Method: "POST", Path: "/sessions/{id}/terminate", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "delete", Method: "DELETE", Path: "/sessions/{id}/delete", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "stream", Method: "GET", Path: "/sessions/{id}/stream", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "provision log", Method: "GET", Path: "/sessions/{id}/provision-log", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "bob's list", Method: "GET", Path: "/sessions", Token: bob, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 0) // alice's session is not in bob's list
			}},
		{Name: "alice's session untouched", Method: "GET", Path: "/sessions/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["status"], "completed")    // not terminated, not deleted
				is.Equal(r.Obj()["turn_count"], float64(1)) // no prompt queued
			}},
	})
}

// mount_path values that could only fail at provisioning are refused at
// create, naming the field; no session is stored.
func TestSessionMountPathRefusedAtCreate(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	for _, mp := range []string{"/etc/passwd", "/usr/bin", "/bin", "/lib", "/dev", "/proc/self", "/tmp", "/a\x00b",
		"/" + strings.Repeat("d", 5000)} {
		t.Run(fmt.Sprintf("%.20q", mp), func(t *testing.T) {
			is := is.New(t)
			r := a.Do("POST", "/sessions", tok, apitest.SessionBody(agent, "true", "resources", []any{
				map[string]any{"type": "github_repository", "url": "https://github.com/acme/r", "mount_path": mp}}))
			is.Equal(r.Status, http.StatusUnprocessableEntity) // refused now, not at provisioning
			items, _ := r.Obj()["detail"].([]any)
			is.True(len(items) > 0) // a list detail
			first, _ := items[0].(map[string]any)
			is.Equal(first["loc"], []any{"resources", float64(0), "mount_path"}) // naming the field
			is.True(len(r.Raw) < 4<<10)                                          // and bounded
		})
	}
	is.New(t).Equal(len(a.Do("GET", "/sessions", tok, nil).Data()), 0) // nothing was stored
}

// Open streams are limited per user (429 with limit and active, as the
// session quota) and on the server (503 with Retry-After), before anything
// streams; a closed stream makes room.
func TestSessionStreamLimits(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, apitest.Options{MaxStreamsPerUser: 1, MaxStreams: 2})
	alice, bob, carol := a.Token("alice"), a.Token("bob"), a.Token("carol")
	session := func(tok string) string {
		return a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "sleep 60"))
	}
	ids := map[string]string{alice: session(alice), bob: session(bob), carol: session(carol)}
	hold := func(tok string) context.CancelFunc { // a stream that stays open: the session never runs here
		ctx, cancel := context.WithCancel(t.Context())
		st := testkit.Connect(t, ctx, a.URL+"/sessions/"+ids[tok]+"/stream", map[string]string{"Authorization": "Bearer " + tok})
		is.Equal(st.Next(t).Event().Type, "start") // streaming
		return cancel
	}
	closeAlice := hold(alice)
	s := a.Stream(alice, ids[alice], apitest.StreamOptions{})
	is.Equal(s.Status, http.StatusTooManyRequests) // alice's second stream is over her limit
	is.Equal(s.Body, map[string]any{"detail": "Concurrent stream limit reached (1/1). Close a stream before opening another.",
		"limit": float64(1), "active": float64(1)}) // with the limit and what is open, as the session quota has them
	closeBob := hold(bob)
	s = a.Stream(carol, ids[carol], apitest.StreamOptions{})
	is.Equal(s.Status, http.StatusServiceUnavailable)                                                      // the server is at its cap
	is.Equal(s.Header.Get("Retry-After"), "5")                                                             // saying when to retry
	is.Equal(s.Body, map[string]any{"detail": "Too many open streams on this server; try again shortly."}) // as JSON
	closeAlice()
	testkit.Eventually(apitest.Patience, func() bool { total, _ := a.Streams.Open(""); return total == 1 })
	closeCarol := hold(carol) // a closed stream made room
	closeBob()
	closeCarol()
}

// POST /sessions/{id}/interrupt as the original's newest revision has it:
// 202 with the status when asked; the turn stops, reports "completed" with
// "interrupted": true and the killed process's exit code; the session is
// completed and takes the next prompt; the stream ends with exit; the 409s
// for completed, failed and terminated sessions; 404 for others'.
func TestSessionInterrupt(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok, bob := a.Token("alice"), a.Token("bob")
	agent := a.ShellAgent(tok)
	id := a.StartSession(tok, apitest.SessionBody(agent, "echo started; exec sleep 1000"))
	a.WaitStatus(tok, id, "running")
	r := a.Do("POST", "/sessions/"+id+"/interrupt", bob, nil)
	is.Equal(r.Status, http.StatusNotFound) // not someone else's
	r = a.Do("POST", "/sessions/"+id+"/interrupt", tok, nil)
	is.Equal(r.Status, http.StatusAccepted)                          // accepted
	is.Equal(r.Obj(), map[string]any{"id": id, "status": "running"}) // with the status when asked
	got := a.WaitStatus(tok, id, "completed", "failed")
	is.Equal(got["status"], "completed")     // the session is completed
	is.Equal(got["exit_code"], float64(143)) // with the killed process's code
	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil).Obj()["data"].([]any)
	turn := turns[0].(map[string]any)
	is.Equal(turn["status"], "completed") // a status the SDKs know
	is.Equal(turn["interrupted"], true)   // marked interrupted
	s := a.Finish(tok, id)
	is.Equal(s.Last().Type(), "exit")             // the stream ends with exit
	is.Equal(s.Last().Data["code"], float64(143)) // and the code
	r = a.Do("POST", "/sessions/"+id+"/interrupt", tok, nil)
	is.Equal(r.Status, http.StatusConflict)
	is.Equal(r.Obj()["detail"], "Session has no active turn to interrupt") // nothing left to interrupt

	is.Equal(a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "exit 3"}).Status, http.StatusAccepted) // the next prompt
	a.WaitStatus(tok, id, "failed")
	r = a.Do("POST", "/sessions/"+id+"/interrupt", tok, nil)
	is.Equal(r.Obj()["detail"], "Session has failed") // a failed session
	is.Equal(a.Do("POST", "/sessions/"+id+"/terminate", tok, nil).Status, http.StatusOK)
	r = a.Do("POST", "/sessions/"+id+"/interrupt", tok, nil)
	is.Equal(r.Obj()["detail"], "Session has been terminated")                                        // a terminated one
	is.Equal(a.Do("GET", "/sessions/"+id+"/interrupt", tok, nil).Status, http.StatusMethodNotAllowed) // POST only
}

// The files API reads the session's sprite: listing, download and archive,
// owner-scoped; a symlink is listed but never followed, and neither it nor
// ".." reaches outside; a missing path is a 404, a gone sprite a 410.
func TestSessionFiles(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok, bob := a.Token("alice"), a.Token("bob")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok),
		"mkdir -p out/sub && printf 'hi\\n' > out/a.txt && echo deep > out/sub/b.txt && ln -s /etc/passwd out/pw && ln -s / out/root"))
	is.Equal(a.WaitStatus(tok, id, "completed", "failed")["status"], "completed") // the files are written

	r := a.Do("GET", "/sessions/"+id+"/files?path=/home/sprite/out", tok, nil)
	is.Equal(r.Status, http.StatusOK) // the directory lists
	byName := map[string]map[string]any{}
	for _, f := range r.Data() {
		m := f.(map[string]any)
		byName[m["name"].(string)] = m
	}
	is.Equal(byName["a.txt"]["type"], "file")                                                                   // a file
	is.Equal(byName["a.txt"]["size"], float64(3))                                                               // its size
	is.Equal(byName["a.txt"]["path"], "/home/sprite/out/a.txt")                                                 // its sprite path
	is.Equal(byName["sub"]["type"], "dir")                                                                      // a directory
	is.Equal(byName["pw"]["type"], "symlink")                                                                   // a symlink
	is.Equal(byName["pw"]["target"], "/etc/passwd")                                                             // with its target
	is.Equal(a.Do("GET", "/sessions/"+id+"/files?path=/home/sprite/out", bob, nil).Status, http.StatusNotFound) // not someone else's

	r = a.Do("GET", "/sessions/"+id+"/files/content?path=/home/sprite/out/a.txt", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                           // a file downloads
	is.Equal(string(r.Raw), "hi\n")                                             // whole
	is.Equal(r.Header.Get("Content-Disposition"), `attachment; filename=a.txt`) // as an attachment
	for _, p := range []string{"/home/sprite/out/pw", "/home/sprite/out/root/etc/passwd", "/home/sprite/../../etc/passwd", "/etc/passwd", "/home/sprite/nope"} {
		r = a.Do("GET", "/sessions/"+id+"/files/content?path="+p, tok, nil)
		is.Equal(r.Status, http.StatusNotFound)                                               // nothing outside the sprite, nor missing
		is.Equal(r.Obj(), map[string]any{"detail": "Path not found in the session's sprite"}) // as JSON
	}
	is.Equal(a.Do("GET", "/sessions/"+id+"/files/content?path=out/a.txt", tok, nil).Status, http.StatusBadRequest) // a relative path

	r = a.Do("GET", "/sessions/"+id+"/archive?path=/home/sprite/out", tok, nil)
	is.Equal(r.Status, http.StatusOK) // the archive streams
	zr, err := gzip.NewReader(bytes.NewReader(r.Raw))
	is.NoErr(err) // gzip
	tr := tar.NewReader(zr)
	entries := map[string]*tar.Header{}
	contents := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		entries[h.Name] = h
		b, _ := io.ReadAll(tr)
		contents[h.Name] = string(b)
	}
	is.Equal(contents["out/a.txt"], "hi\n")                     // files with their bytes
	is.Equal(contents["out/sub/b.txt"], "deep\n")               // at any depth
	is.Equal(entries["out/pw"].Typeflag, byte(tar.TypeSymlink)) // a symlink stays a link
	is.Equal(entries["out/pw"].Linkname, "/etc/passwd")         // to its target
	is.Equal(contents["out/pw"], "")                            // never its target's bytes
	_, through := entries["out/root/etc/passwd"]
	is.True(!through) // nothing through a symlinked directory

	is.Equal(a.Do("POST", "/sessions/"+id+"/terminate", tok, nil).Status, http.StatusOK)
	r = a.Do("GET", "/sessions/"+id+"/files/content?path=/home/sprite/out/a.txt", tok, nil)
	is.Equal(string(r.Raw), "hi\n") // terminate keeps the files (the retention removes them: 410 then)
	is.Equal(a.Do("DELETE", "/sessions/"+id+"/delete", tok, nil).Status, http.StatusOK)
	is.Equal(a.Do("GET", "/sessions/"+id+"/files", tok, nil).Status, http.StatusNotFound) // delete removes everything
}

// budget_usd is optional on create, a number above 0 (at most 1,000,000),
// validated like every field, and shown on the session.
func TestSessionBudgetField(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	for _, bad := range []any{"lots", 0, -1, 2e6, true} {
		r := a.Do("POST", "/sessions", tok, map[string]any{"agent_id": agent, "prompt": "hi", "budget_usd": bad})
		is.Equal(r.Status, http.StatusUnprocessableEntity) // refused with the field's problem
		loc := r.Obj()["detail"].([]any)[0].(map[string]any)["loc"].([]any)
		is.Equal(loc[len(loc)-1], "budget_usd") // naming it
	}
	r := a.Do("POST", "/sessions", tok, map[string]any{"agent_id": agent, "prompt": "hi", "budget_usd": 2.5})
	is.Equal(r.Status, http.StatusAccepted)
	s := a.Session(tok, r.Obj()["id"].(string))
	is.Equal(s["budget_usd"], 2.5)         // the budget
	is.Equal(s["budget_exhausted"], false) // not reached
}

// GET /sessions/{id}/events pages through the stored events, each exactly
// as the stream carries it, for clients that cannot hold a stream.
func TestSessionEventsList(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, running)
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "for i in 1 2 3 4 5; do echo line $i; sleep 0.05; done"))
	s := a.Finish(tok, id)
	var want []string // the stream's stored events (not start, turn_start or the terminal one)
	for _, e := range s.Events {
		if e.Type() == "stage" || e.Type() == "output" {
			want = append(want, e.Raw)
		}
	}
	var got []string
	after := ""
	pages := 0
	for {
		r := a.Do("GET", "/sessions/"+id+"/events?limit=3"+after, tok, nil)
		is.Equal(r.Status, http.StatusOK) // a page
		obj := r.Obj()
		var page struct {
			Data []json.RawMessage `json:"data"`
		}
		is.NoErr(json.Unmarshal(r.Raw, &page))
		for _, d := range page.Data {
			got = append(got, string(d))
		}
		pages++
		if obj["has_more"] != true {
			break
		}
		after = fmt.Sprintf("&after=%d", int64(obj["next_after"].(float64)))
	}
	is.True(pages > 1)            // more than one page of 3
	is.Equal(len(got), len(want)) // every stored event once
	for i := range want {
		is.True(strings.HasSuffix(want[i], got[i])) // byte for byte as on the stream (see got[i])
	}
	r := a.Do("GET", "/sessions/"+id+"/events?after=999999", tok, nil)
	is.Equal(r.Obj()["has_more"], false) // past the end: nothing
	is.Equal(r.Obj()["next_after"], nil)
	is.Equal(a.Do("GET", "/sessions/"+id+"/events?limit=0", tok, nil).Status, http.StatusBadRequest)  // a bad limit
	is.Equal(a.Do("GET", "/sessions/"+id+"/events?after=x", tok, nil).Status, http.StatusBadRequest)  // a bad cursor
	is.Equal(a.Do("GET", "/sessions/"+id+"/events", a.Token("bob"), nil).Status, http.StatusNotFound) // not someone else's
}

// A caller's own API keys over HTTP: created with the token shown once,
// listed without it, revoked by prefix (then refused); another user's key
// is a 404; the body is validated like every other.
func TestAPIKeysOverHTTP(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok, bob := a.Token("alice"), a.Token("bob")
	r := a.Do("POST", "/api-keys", tok, map[string]any{"name": "dashboard", "expires_in": 3600})
	is.Equal(r.Status, http.StatusCreated) // created
	k := r.Obj()
	token, _ := k["token"].(string)
	is.True(strings.HasPrefix(token, "aod_"))                 // with its token, this once
	is.Equal(k["name"], "dashboard")                          // its name
	is.True(k["expires_at"] != nil && k["revoked_at"] == nil) // an expiry, not revoked
	prefix := k["prefix"].(string)
	is.True(strings.HasPrefix(token, prefix)) // the prefix is the token's start

	is.Equal(a.Do("GET", "/agents", token, nil).Status, http.StatusOK) // the new token works
	list := a.Do("GET", "/api-keys", tok, nil)
	is.Equal(list.Status, http.StatusOK)
	is.True(!strings.Contains(string(list.Raw), token)) // the list never shows a token
	found := false
	for _, item := range list.Data() {
		found = found || item.(map[string]any)["prefix"] == prefix
	}
	is.True(found) // the new key is listed

	is.Equal(a.Do("POST", "/api-keys/"+prefix+"/revoke", bob, nil).Status, http.StatusNotFound) // not bob's to revoke
	r = a.Do("POST", "/api-keys/"+prefix+"/revoke", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                            // revoked
	is.True(r.Obj()["revoked_at"] != nil)                                        // and says when
	is.Equal(a.Do("GET", "/agents", token, nil).Status, http.StatusUnauthorized) // the token is refused from now on

	is.Equal(a.Do("POST", "/api-keys", tok, map[string]any{}).Status, http.StatusUnprocessableEntity)                             // a name is required
	is.Equal(a.Do("POST", "/api-keys", tok, map[string]any{"name": "x", "expires_in": 5}).Status, http.StatusUnprocessableEntity) // a lifetime too short
	is.Equal(a.Do("GET", "/api-keys", "", nil).Status, http.StatusUnauthorized)                                                   // only with a token
}

// POST /admin/api-keys: an operator key creates a user (if new) and a key
// for them; an ordinary key gets 403; the body is validated.
func TestOperatorAPIKeys(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	ops, err := a.DB.EnsureUser(context.Background(), "ops")
	is.NoErr(err)
	_, operator, err := a.DB.CreateOperatorKey(context.Background(), ops.ID, "console", nil)
	is.NoErr(err)
	plain := a.Token("ann")

	r := a.Do("POST", "/admin/api-keys", plain, map[string]any{"user": "carol"})
	is.Equal(r.Status, http.StatusForbidden) // not with an ordinary key
	r = a.Do("POST", "/admin/api-keys", operator, map[string]any{"user": "carol", "name": "dashboard", "expires_in": 3600})
	is.Equal(r.Status, http.StatusCreated) // created
	k := r.Obj()
	is.Equal(k["user"], "carol")     // for carol
	is.Equal(k["name"], "dashboard") // named
	is.Equal(k["admin"], false)      // an ordinary key
	is.True(k["expires_at"] != nil)  // expiring
	token := k["token"].(string)
	is.Equal(a.Do("GET", "/agents", token, nil).Status, http.StatusOK)                             // the key works
	is.Equal(a.Do("GET", "/api-keys", token, nil).Data()[0].(map[string]any)["name"], "dashboard") // as carol's own
	is.True(a.Do("GET", "/api-keys", operator, nil).Data()[0].(map[string]any)["admin"] == true)   // the operator's own key says what it is

	is.Equal(a.Do("POST", "/admin/api-keys", operator, map[string]any{}).Status, http.StatusUnprocessableEntity)                    // user is required
	is.Equal(a.Do("POST", "/admin/api-keys", operator, map[string]any{"user": "no spaces"}).Status, http.StatusUnprocessableEntity) // and a valid username
	is.Equal(a.Do("POST", "/admin/api-keys", "", map[string]any{"user": "x"}).Status, http.StatusUnauthorized)                      // only with a token
}
