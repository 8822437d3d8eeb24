package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// The sessions API (api.md §2, §3, §5.4, §5.5, §9; original-api.md §8),
// driven over HTTP against a real server whose runner runs real processes:
// a session of the shell agent runs its prompt as a bash script in a sprite.
// Helpers here carry a sess prefix because other files of the package
// define their own.

// sessPatience bounds every wait for a session or a stream. It is a guard
// against hangs, not a latency assertion.
const sessPatience = 60 * time.Second

// sessMissingID is a well-formed UUID no session or agent has.
const sessMissingID = "00000000-0000-4000-8000-0000000000aa"

// Exact key sets of the contract's shapes (api.md §3).
var (
	sessAckKeys       = []string{"current_turn", "environment_id", "id", "resources", "status", "stream_url"}
	sessPromptAckKeys = []string{"current_turn", "id", "status", "stream_url"}
	sessSessionKeys   = []string{"agent_id", "created_at", "current_turn", "environment_id", "exit_code", "id", "provider",
		"resources", "runtime", "status", "turn_count", "updated_at"}
	sessTurnKeys     = []string{"created_at", "ended_at", "exit_code", "prompt", "started_at", "status", "turn_number"}
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

// sessShellAgent creates tok's shell agent (the prompt runs as a bash
// script) with extra fields kv and returns its id.
func sessShellAgent(a *api, tok string, kv ...any) string {
	a.t.Helper()
	body := map[string]any{"name": "sh", "runtime": "shell", "model": "local/shell"}
	for i := 0; i+1 < len(kv); i += 2 {
		body[kv[i].(string)] = kv[i+1]
	}
	id, _ := a.mustCreate("/agents", tok, body)["id"].(string)
	return id
}

// sessBody is a create body for agent with prompt and extra fields kv.
func sessBody(agent, prompt string, kv ...any) map[string]any {
	body := map[string]any{"agent_id": agent, "prompt": prompt}
	for i := 0; i+1 < len(kv); i += 2 {
		body[kv[i].(string)] = kv[i+1]
	}
	return body
}

// sessStart creates a session and returns its id, failing the test unless
// the answer is 202.
func sessStart(a *api, tok string, body map[string]any) string {
	a.t.Helper()
	r := a.do("POST", "/sessions", tok, body)
	if r.Status != http.StatusAccepted {
		a.t.Fatalf("POST /sessions: status %d, body %s", r.Status, r.Raw)
	}
	id, _ := r.obj()["id"].(string)
	return id
}

// sessGet returns the session as the API shows it, failing unless 200.
func sessGet(a *api, tok, id string) map[string]any {
	a.t.Helper()
	r := a.do("GET", "/sessions/"+id, tok, nil)
	if r.Status != http.StatusOK {
		a.t.Fatalf("GET /sessions/%s: status %d, body %s", id, r.Status, r.Raw)
	}
	return r.obj()
}

// sessCount is the number of sessions tok's user has.
func sessCount(a *api, tok string) int {
	a.t.Helper()
	r := a.do("GET", "/sessions", tok, nil)
	if r.Status != http.StatusOK {
		a.t.Fatalf("GET /sessions: status %d, body %s", r.Status, r.Raw)
	}
	return len(r.data())
}

// sessWaitStatus polls the session until its status is one of want and
// returns it; the deadline is a hang guard.
func sessWaitStatus(a *api, tok, id string, want ...string) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(sessPatience)
	for {
		s := sessGet(a, tok, id)
		if slices.Contains(want, fmt.Sprint(s["status"])) {
			return s
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("session %s still %v after %s, want one of %v", id, s["status"], sessPatience, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessEvent is one SSE frame of a session stream.
type sessEvent struct {
	IDLine string         // the id: line's value, "" when the frame has none
	JSON   string         // the data: line's JSON text
	Data   map[string]any // the data decoded
}

func (e sessEvent) typ() string { s, _ := e.Data["type"].(string); return s }

// id is the event's JSON id (0 when absent).
func (e sessEvent) id() int64 { f, _ := e.Data["id"].(float64); return int64(f) }

func sessIsTerminal(typ string) bool {
	return typ == "exit" || typ == "error" || typ == "terminated" || typ == "stale"
}

// sessStreamResult is what one GET /sessions/{id}/stream returned.
type sessStreamResult struct {
	Status int
	Header http.Header
	Raw    []byte      // every byte read
	Events []sessEvent // the complete frames, in order
	Closed bool        // the server ended the response
	Body   map[string]any
}

// last returns the stream's last event (zero when none).
func (s sessStreamResult) last() sessEvent {
	if len(s.Events) == 0 {
		return sessEvent{}
	}
	return s.Events[len(s.Events)-1]
}

// types lists the events' types in order.
func (s sessStreamResult) types() []string {
	out := make([]string, len(s.Events))
	for i, e := range s.Events {
		out[i] = e.typ()
	}
	return out
}

// output concatenates the data of the output events on stream (stdout or
// stderr) of turn (0 = every turn).
func (s sessStreamResult) output(stream string, turn int) string {
	var b strings.Builder
	for _, e := range s.Events {
		if e.typ() != "output" || e.Data["stream"] != stream {
			continue
		}
		if n, _ := e.Data["turn"].(float64); turn != 0 && int(n) != turn {
			continue
		}
		d, _ := e.Data["data"].(string)
		b.WriteString(d)
	}
	return b.String()
}

// sessStream reads a session's stream to its end with the given extra
// request headers (and query, e.g. "?since=3"). A stream that does not end
// within sessPatience fails the test.
func sessStream(a *api, tok, id, query string, headers map[string]string) sessStreamResult {
	a.t.Helper()
	return sessStreamUntil(a, tok, id, query, headers, nil)
}

// sessStreamUntil is sessStream that hangs up once stop (when not nil)
// returns true for an event.
func sessStreamUntil(a *api, tok, id, query string, headers map[string]string, stop func(sessEvent) bool) sessStreamResult {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sessPatience)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", a.URL+"/sessions/"+id+"/stream"+query, nil)
	if err != nil {
		a.t.Fatalf("new request: %v", err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := a.HTTP.Do(req)
	if err != nil {
		a.t.Fatalf("GET stream: %v", err)
	}
	defer res.Body.Close()
	out := sessStreamResult{Status: res.StatusCode, Header: res.Header}
	if res.StatusCode != http.StatusOK {
		out.Raw, _ = io.ReadAll(res.Body)
		_ = json.Unmarshal(out.Raw, &out.Body)
		out.Closed = true
		return out
	}
	br := bufio.NewReaderSize(res.Body, 1<<17)
	var ev sessEvent
	for {
		line, err := br.ReadString('\n')
		out.Raw = append(out.Raw, line...)
		if err != nil {
			if ctx.Err() != nil {
				a.t.Fatalf("stream of session %s did not end within %s; events so far: %v", id, sessPatience, out.types())
			}
			out.Closed = err == io.EOF
			return out
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "id: "):
			ev.IDLine = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			ev.JSON = strings.TrimPrefix(line, "data: ")
			if err := json.Unmarshal([]byte(ev.JSON), &ev.Data); err != nil {
				a.t.Fatalf("stream of session %s: data line is not JSON: %q", id, line)
			}
		case line == "":
			if ev.Data != nil {
				out.Events = append(out.Events, ev)
				if stop != nil && stop(ev) {
					return out
				}
			}
			ev = sessEvent{}
		}
	}
}

// sessFinish reads the session's stream to its terminal event and returns
// the whole stream.
func sessFinish(a *api, tok, id string) sessStreamResult {
	a.t.Helper()
	s := sessStream(a, tok, id, "", nil)
	if s.Status != http.StatusOK || !sessIsTerminal(s.last().typ()) {
		a.t.Fatalf("stream of session %s: status %d, events %v, body %s", id, s.Status, s.types(), s.Raw)
	}
	return s
}

// sessProcs lists the live (non-zombie) processes whose environment carries
// AOD_SESSION_ID=id, with their command names.
func sessProcs(id string) []string {
	var out []string
	marker := "AOD_SESSION_ID=" + id + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(env), marker) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		out = append(out, strings.TrimSpace(string(comm)))
	}
	return out
}

// sessWaitProcs waits until the session has at least n live processes
// named comm and reports whether it got there before the deadline.
func sessWaitProcs(id, comm string, n int) bool {
	deadline := time.Now().Add(sessPatience)
	for time.Now().Before(deadline) {
		count := 0
		for _, c := range sessProcs(id) {
			if c == comm {
				count++
			}
		}
		if count >= n {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// sessWaitNoProcs waits until no process of the session is left and
// returns what is left at the deadline (nil when none).
func sessWaitNoProcs(id string, within time.Duration) []string {
	deadline := time.Now().Add(within)
	for {
		left := sessProcs(id)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessDoWithin sends a bodyless request that must be answered within d (a
// guard for "answers at once"), returning its status and decoded body.
func sessDoWithin(a *api, d time.Duration, method, path, tok string) (int, map[string]any, error) {
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
func sessExactDetail(want string) func(*is.I, response) {
	return func(is *is.I, r response) {
		is.Equal(r.obj(), map[string]any{"detail": want}) // exactly {"detail": want}
	}
}

// sessWantLoc is a scenario check for a 422 list detail with an item whose
// loc is loc (ints as Go ints).
func sessWantLoc(loc ...any) func(*is.I, response) {
	return func(is *is.I, r response) {
		items, ok := r.obj()["detail"].([]any)
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
func sessWantMsg(msg string, loc ...any) func(*is.I, response) {
	return func(is *is.I, r response) {
		sessWantLoc(loc...)(is, r)
		items, _ := r.obj()["detail"].([]any)
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
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok, "system", "echo from-system")

	r := a.do("POST", "/sessions", tok, sessBody(agent, "echo hi"))
	is.Equal(r.Status, http.StatusAccepted)                                     // create is 202
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
	ack := r.obj()
	is.Equal(sessKeys(ack), sessAckKeys) // the ack has exactly the contract's keys
	id, _ := ack["id"].(string)
	is.True(canonicalIDPattern.MatchString(id))                  // the id is a canonical lowercase UUID
	is.Equal(ack["status"], "pending")                           // a new session is pending
	is.Equal(ack["stream_url"], "/sessions/"+id+"/stream")       // stream_url is the relative stream path
	is.Equal(ack["environment_id"], nil)                         // no environment
	is.Equal(ack["resources"], []any{})                          // no resources: an empty list
	is.Equal(ack["current_turn"], float64(1))                    // turn 1
	is.True(strings.Contains(string(r.Raw), `"current_turn":1`)) // current_turn is a JSON integer

	turns := a.do("GET", "/sessions/"+id+"/turns", tok, nil)
	is.Equal(turns.Status, http.StatusOK) // turns listed
	is.Equal(len(turns.data()), 1)        // exactly one turn
	turn, _ := turns.data()[0].(map[string]any)
	is.Equal(turn["turn_number"], float64(1))                                          // numbered 1
	is.Equal(turn["prompt"], "echo hi")                                                // the raw prompt, without the agent's system prompt
	is.True(slices.Contains([]any{"pending", "running", "completed"}, turn["status"])) // a turn status of the contract

	s := sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "exit") // the session ran
	got := sessGet(a, tok, id)
	is.Equal(got["turn_count"], float64(1))   // still one turn
	is.Equal(got["current_turn"], float64(1)) // current turn 1
	_, hasPrompt := got["prompt"]
	is.True(!hasPrompt) // no prompt on the session
}

func TestSessionCreateValidation(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	agent := sessShellAgent(a, tok)
	bobsAgent := sessShellAgent(a, bob)
	archived := sessShellAgent(a, tok)
	is.New(t).Equal(a.do("POST", "/agents/"+archived+"/archive", tok, nil).Status, http.StatusOK) // archive an agent

	ok := func(kv ...any) map[string]any { return sessBody(agent, "true", kv...) }
	missing := func(key string) map[string]any { b := ok(); delete(b, key); return b }
	accepted := 0
	created := func(is *is.I, r response) {
		accepted++
		is.Equal(r.obj()["status"], "pending") // the ack
	}
	rows := []scenario{
		{name: "invalid JSON", method: "POST", path: "/sessions", token: tok, body: `{"agent_id": `, wantStatus: 400,
			check: sessExactDetail("Invalid JSON")},
		{name: "JSON array", method: "POST", path: "/sessions", token: tok, body: `[1]`, wantStatus: 400,
			check: sessExactDetail("Invalid JSON")},
		{name: "trailing data", method: "POST", path: "/sessions", token: tok, body: `{"agent_id": "x", "prompt": "y"} {}`, wantStatus: 400,
			check: sessExactDetail("Invalid JSON")},
		{name: "missing prompt", method: "POST", path: "/sessions", token: tok, body: missing("prompt"), wantStatus: 422,
			check: sessWantLoc("prompt")},
		{name: "missing agent_id", method: "POST", path: "/sessions", token: tok, body: missing("agent_id"), wantStatus: 422,
			check: sessWantLoc("agent_id")},
		{name: "empty body", method: "POST", path: "/sessions", token: tok, body: map[string]any{}, wantStatus: 422,
			check: func(is *is.I, r response) {
				sessWantLoc("agent_id")(is, r)
				sessWantLoc("prompt")(is, r)
			}},
		{name: "empty prompt", method: "POST", path: "/sessions", token: tok, body: sessBody(agent, ""), wantStatus: 422,
			check: sessWantLoc("prompt")},
		{name: "prompt not a string", method: "POST", path: "/sessions", token: tok, body: ok("prompt", 5), wantStatus: 422,
			check: sessWantLoc("prompt")},
		{name: "agent_id not a string", method: "POST", path: "/sessions", token: tok, body: ok("agent_id", 5), wantStatus: 422,
			check: sessWantLoc("agent_id")},
		{name: "timeout soon", method: "POST", path: "/sessions", token: tok, body: ok("timeout", "soon"), wantStatus: 422,
			check: sessWantLoc("timeout")},
		{name: "timeout 5", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 5), wantStatus: 422,
			check: sessWantLoc("timeout")},
		{name: "timeout 9", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 9), wantStatus: 422,
			check: sessWantLoc("timeout")},
		{name: "timeout 3601", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 3601), wantStatus: 422,
			check: sessWantLoc("timeout")},
		{name: "timeout 4000", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 4000), wantStatus: 422,
			check: sessWantLoc("timeout")},
		{name: "timeout 12.5", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 12.5), wantStatus: 422,
			check: sessWantLoc("timeout")},
		{name: "validation before lookup: unknown agent with a bad timeout", method: "POST", path: "/sessions", token: tok,
			body: sessBody(sessMissingID, "true", "timeout", 5), wantStatus: 422, check: sessWantLoc("timeout")},
		{name: "unknown agent", method: "POST", path: "/sessions", token: tok, body: sessBody(sessMissingID, "true"), wantStatus: 404,
			check: sessExactDetail("Agent not found")},
		{name: "agent_id not a UUID", method: "POST", path: "/sessions", token: tok, body: sessBody("not-a-uuid", "true"), wantStatus: 404,
			check: sessExactDetail("Agent not found")},
		{name: "another user's agent", method: "POST", path: "/sessions", token: tok, body: sessBody(bobsAgent, "true"), wantStatus: 404,
			check: sessExactDetail("Agent not found")},
		{name: "archived agent", method: "POST", path: "/sessions", token: tok, body: sessBody(archived, "true"), wantStatus: 409,
			check: sessExactDetail("Cannot create session with archived agent")},
		{name: "no session was created by the refusals", method: "GET", path: "/sessions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 0) // nothing stored
			}},
		{name: "timeout 10", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 10), wantStatus: 202, check: created},
		{name: "timeout 3600", method: "POST", path: "/sessions", token: tok, body: ok("timeout", 3600), wantStatus: 202, check: created},
		{name: "timeout as a numeric string", method: "POST", path: "/sessions", token: tok, body: ok("timeout", "120"), wantStatus: 202, check: created},
		{name: "timeout as an integral float", method: "POST", path: "/sessions", token: tok, body: `{"agent_id": "` + agent + `", "prompt": "true", "timeout": 120.0}`,
			wantStatus: 202, check: created},
		{name: "timeout absent", method: "POST", path: "/sessions", token: tok, body: ok(), wantStatus: 202, check: created},
		{name: "agent_id in upper case", method: "POST", path: "/sessions", token: tok, body: sessBody(strings.ToUpper(agent), "true"),
			wantStatus: 202, check: created},
		{name: "one session per 202", method: "GET", path: "/sessions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), accepted) // every 202 stored one session, nothing else did
			}},
	}
	a.run(t, "", rows)

	// The stored per-turn timeouts: the value given, else the default 600.
	is := is.New(t)
	ctx := context.Background()
	u, err := a.DB.UserByName(ctx, "alice")
	is.NoErr(err) // find alice
	list := a.do("GET", "/sessions", tok, nil).data()
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
		is.Equal(sessFinish(a, tok, id).last().typ(), "exit") // each accepted session runs to its end
	}
}

func TestSessionEnvironments(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	env1, _ := a.mustCreate("/environments", tok, map[string]any{"name": "one"})["id"].(string)
	env2, _ := a.mustCreate("/environments", tok, map[string]any{"name": "two"})["id"].(string)
	gone, _ := a.mustCreate("/environments", tok, map[string]any{"name": "gone"})["id"].(string)
	bobsEnv, _ := a.mustCreate("/environments", bob, map[string]any{"name": "bobs"})["id"].(string)
	plain := sessShellAgent(a, tok)
	withEnv := sessShellAgent(a, tok, "environment_id", env1)
	withGone := sessShellAgent(a, tok, "environment_id", gone)
	is.New(t).Equal(a.do("POST", "/environments/"+gone+"/archive", tok, nil).Status, http.StatusOK) // archive one

	ackEnv := func(want any) func(*is.I, response) {
		return func(is *is.I, r response) {
			is.Equal(r.obj()["environment_id"], want) // the ack's environment_id
			id, _ := r.obj()["id"].(string)
			is.Equal(sessGet(a, tok, id)["environment_id"], want) // GET shows the same environment
		}
	}
	a.run(t, "", []scenario{
		{name: "explicit environment", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true", "environment_id", env2), wantStatus: 202, check: ackEnv(env2)},
		{name: "agent's default inherited", method: "POST", path: "/sessions", token: tok,
			body: sessBody(withEnv, "true"), wantStatus: 202, check: ackEnv(env1)},
		{name: "explicit overrides the agent's", method: "POST", path: "/sessions", token: tok,
			body: sessBody(withEnv, "true", "environment_id", env2), wantStatus: 202, check: ackEnv(env2)},
		{name: "null uses the agent's", method: "POST", path: "/sessions", token: tok,
			body: sessBody(withEnv, "true", "environment_id", nil), wantStatus: 202, check: ackEnv(env1)},
		{name: "empty string uses the agent's", method: "POST", path: "/sessions", token: tok,
			body: sessBody(withEnv, "true", "environment_id", ""), wantStatus: 202, check: ackEnv(env1)},
		{name: "no environment", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true"), wantStatus: 202, check: ackEnv(nil)},
		{name: "explicit archived environment", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true", "environment_id", gone), wantStatus: 409,
			check: sessExactDetail("Cannot create session with archived environment")},
		{name: "agent's default archived", method: "POST", path: "/sessions", token: tok,
			body: sessBody(withGone, "true"), wantStatus: 409, check: sessExactDetail("Cannot create session with archived environment")},
		{name: "a good explicit environment beats an archived default", method: "POST", path: "/sessions", token: tok,
			body: sessBody(withGone, "true", "environment_id", env2), wantStatus: 202, check: ackEnv(env2)},
		{name: "unknown environment", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true", "environment_id", sessMissingID), wantStatus: 404, check: sessExactDetail("Environment not found")},
		{name: "environment id not a UUID", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true", "environment_id", "nope"), wantStatus: 404, check: sessExactDetail("Environment not found")},
		{name: "another user's environment", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true", "environment_id", bobsEnv), wantStatus: 404, check: sessExactDetail("Environment not found")},
		{name: "environment_id not a string", method: "POST", path: "/sessions", token: tok,
			body: sessBody(plain, "true", "environment_id", 7), wantStatus: 422, check: sessWantLoc("environment_id")},
		{name: "only the 202s stored sessions", method: "GET", path: "/sessions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 7) // seven accepted creates
			}},
	})
}

func TestSessionCredentials(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	claude, _ := a.mustCreate("/agents", tok, map[string]any{"name": "c", "runtime": "claude", "model": "anthropic/claude-sonnet-4-6"})["id"].(string)
	codex, _ := a.mustCreate("/agents", tok, map[string]any{"name": "x", "runtime": "codex", "model": "openai/gpt-5"})["id"].(string)
	gemini, _ := a.mustCreate("/agents", tok, map[string]any{"name": "g", "runtime": "gemini", "model": "google/gemini-2.5-pro"})["id"].(string)
	anthropicEnv, _ := a.mustCreate("/environments", tok, map[string]any{"name": "keys", "env_vars": map[string]any{"ANTHROPIC_API_KEY": "from-env"}})["id"].(string)
	secrets := func(kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	var accepted []string
	created := func(is *is.I, r response) {
		id, _ := r.obj()["id"].(string)
		is.True(id != "") // the ack has an id
		accepted = append(accepted, id)
	}
	a.run(t, "", []scenario{
		{name: "claude without a key", method: "POST", path: "/sessions", token: tok, body: sessBody(claude, "hi"),
			wantStatus: 400, check: sessExactDetail("No API key configured for runtime: claude")},
		{name: "claude with another runtime's key", method: "POST", path: "/sessions", token: tok,
			body:       sessBody(claude, "hi", "secret_env_vars", secrets("OPENAI_API_KEY", "x")),
			wantStatus: 400, check: sessExactDetail("No API key configured for runtime: claude")},
		{name: "codex without a key", method: "POST", path: "/sessions", token: tok, body: sessBody(codex, "hi"),
			wantStatus: 400, check: sessExactDetail("No API key configured for runtime: codex")},
		{name: "codex with an Anthropic key only", method: "POST", path: "/sessions", token: tok,
			body:       sessBody(codex, "hi", "secret_env_vars", secrets("ANTHROPIC_API_KEY", "x")),
			wantStatus: 400, check: sessExactDetail("No API key configured for runtime: codex")},
		{name: "gemini without a key", method: "POST", path: "/sessions", token: tok, body: sessBody(gemini, "hi"),
			wantStatus: 400, check: sessExactDetail("No API key configured for runtime: gemini")},
		{name: "no session stored by the refusals", method: "GET", path: "/sessions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 0) // nothing stored
			}},
		{name: "claude with ANTHROPIC_API_KEY in secret_env_vars", method: "POST", path: "/sessions", token: tok,
			body: sessBody(claude, "hi", "secret_env_vars", secrets("ANTHROPIC_API_KEY", "x")), wantStatus: 202, check: created},
		{name: "claude with CLAUDE_CODE_OAUTH_TOKEN", method: "POST", path: "/sessions", token: tok,
			body: sessBody(claude, "hi", "secret_env_vars", secrets("CLAUDE_CODE_OAUTH_TOKEN", "x")), wantStatus: 202, check: created},
		{name: "claude with ANTHROPIC_AUTH_TOKEN (a gateway's bearer token)", method: "POST", path: "/sessions", token: tok,
			body: sessBody(claude, "hi", "secret_env_vars", secrets("ANTHROPIC_AUTH_TOKEN", "x")), wantStatus: 202, check: created},
		{name: "claude with the key in the environment's env_vars", method: "POST", path: "/sessions", token: tok,
			body: sessBody(claude, "hi", "environment_id", anthropicEnv), wantStatus: 202, check: created},
		{name: "codex with OPENAI_API_KEY", method: "POST", path: "/sessions", token: tok,
			body: sessBody(codex, "hi", "secret_env_vars", secrets("OPENAI_API_KEY", "x")), wantStatus: 202, check: created},
		{name: "gemini with GEMINI_API_KEY", method: "POST", path: "/sessions", token: tok,
			body: sessBody(gemini, "hi", "secret_env_vars", secrets("GEMINI_API_KEY", "x")), wantStatus: 202, check: created},
	})

	// An accepted session goes on to provision its runtime's CLI. Running
	// the CLIs is the runtime tests' business (they need the npm cache):
	// here each session is stopped once install_runtime has begun.
	t.Run("accepted sessions go on to install their runtime", func(t *testing.T) {
		is := is.New(t)
		is.Equal(len(accepted), 6) // six sessions were accepted
		for _, id := range accepted {
			s := sessStreamUntil(a, tok, id, "", nil, func(e sessEvent) bool {
				return e.typ() == "stage" && e.Data["stage"] == "install_runtime"
			})
			is.Equal(s.last().typ(), "stage")                   // provisioning began
			is.Equal(s.last().Data["stage"], "install_runtime") // and reached install_runtime
			r := a.do("POST", "/sessions/"+id+"/terminate", tok, nil)
			is.Equal(r.Status, http.StatusOK) // stop it
		}
		got := sessGet(a, tok, accepted[0])
		is.Equal(got["runtime"], "claude")                                   // the agent's runtime
		is.Equal(got["provider"], "anthropic")                               // and provider
		is.Equal(sessFinish(a, tok, accepted[0]).last().typ(), "terminated") // its stream ends terminated
	})
}

// With the runtimes pointed at a model API that needs no key (the fake
// model), a session needs no key either (api.md §1, Credentials).
func TestSessionCredentialsKeyless(t *testing.T) {
	is := is.New(t)
	a := newAPIWith(t, apiOptions{keyless: true})
	tok := a.token("alice")
	claude, _ := a.mustCreate("/agents", tok, map[string]any{"name": "c", "runtime": "claude", "model": "anthropic/claude-sonnet-4-6"})["id"].(string)
	r := a.do("POST", "/sessions", tok, sessBody(claude, "hi"))
	is.Equal(r.Status, http.StatusAccepted) // no key needed
	id, _ := r.obj()["id"].(string)
	is.Equal(a.do("POST", "/sessions/"+id+"/terminate", tok, nil).Status, http.StatusOK) // stop it: running the CLI is not this test's business
}

func TestSessionQuota(t *testing.T) {
	// Enough runner slots that a new session never queues behind the
	// sleeping ones.
	a := newAPIWith(t, apiOptions{maxConcurrent: 2, maxRunning: 8})
	ctx := context.Background()
	alice := a.token("alice")
	bob := a.token("bob")
	carol := a.token("carol")
	is := is.New(t)
	is.NoErr(a.DB.SetUserQuota(ctx, "alice", 1)) // alice's own limit: 1, below the server's 2
	is.NoErr(a.DB.SetUserQuota(ctx, "carol", 3)) // carol's own limit: 3, above the server's 2
	aliceAgent := sessShellAgent(a, alice)
	bobAgent := sessShellAgent(a, bob)
	carolAgent := sessShellAgent(a, carol)

	// Finished sessions don't count.
	done := sessStart(a, alice, sessBody(aliceAgent, "true"))
	is.Equal(sessFinish(a, alice, done).last().typ(), "exit") // a finished session
	long := sessStart(a, alice, sessBody(aliceAgent, "sleep 30"))

	r := a.do("POST", "/sessions", alice, sessBody(aliceAgent, "true"))
	is.Equal(r.Status, http.StatusTooManyRequests) // alice is at her limit
	want429 := map[string]any{
		"detail": "Concurrent session limit reached (1/1). Terminate an active session before starting a new one.",
		"limit":  float64(1),
		"active": float64(1),
	}
	is.Equal(r.obj(), want429)                                                                             // the exact 429 body
	is.True(strings.Contains(string(r.Raw), `"limit":1`) && strings.Contains(string(r.Raw), `"active":1`)) // limit and active are JSON integers
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json"))                            // JSON content type
	is.Equal(sessCount(a, alice), 2)                                                                       // no session row was created

	// Other users are not affected, and a per-user limit above the
	// server's default is honoured too.
	b1 := sessStart(a, bob, sessBody(bobAgent, "sleep 30"))
	b2 := sessStart(a, bob, sessBody(bobAgent, "sleep 30"))
	r = a.do("POST", "/sessions", bob, sessBody(bobAgent, "true"))
	is.Equal(r.Status, http.StatusTooManyRequests) // bob is at the server's default of 2
	is.Equal(r.obj()["limit"], float64(2))         // the server default
	is.Equal(r.obj()["active"], float64(2))        // bob's two active sessions
	c := []string{
		sessStart(a, carol, sessBody(carolAgent, "sleep 30")),
		sessStart(a, carol, sessBody(carolAgent, "sleep 30")),
		sessStart(a, carol, sessBody(carolAgent, "sleep 30")),
	}
	r = a.do("POST", "/sessions", carol, sessBody(carolAgent, "true"))
	is.Equal(r.Status, http.StatusTooManyRequests)                                                                         // carol is at her own limit of 3
	is.Equal(r.detail(), "Concurrent session limit reached (3/3). Terminate an active session before starting a new one.") // carol's numbers

	// Terminating frees the slot.
	is.Equal(a.do("POST", "/sessions/"+long+"/terminate", alice, nil).Status, http.StatusOK) // terminate alice's running session
	again := a.do("POST", "/sessions", alice, sessBody(aliceAgent, "true"))
	is.Equal(again.Status, http.StatusAccepted) // alice can start a session again
	id, _ := again.obj()["id"].(string)
	is.Equal(sessFinish(a, alice, id).last().typ(), "exit") // and it runs

	for _, s := range append([]string{b1, b2}, c...) {
		tok := bob
		if slices.Contains(c, s) {
			tok = carol
		}
		is.Equal(a.do("POST", "/sessions/"+s+"/terminate", tok, nil).Status, http.StatusOK) // clean up
	}
}

func TestSessionResources(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok)
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
	body := func(rs ...any) map[string]any { return sessBody(agent, "true", "resources", rs) }
	noToken := func(is *is.I, r response) {
		is.True(!strings.Contains(string(r.Raw), token)) // the token is never echoed
	}
	var ids []string
	wantResources := func(want ...map[string]any) func(*is.I, response) {
		return func(is *is.I, r response) {
			noToken(is, r)
			wantJSON := agentJSON(want)
			if len(want) == 0 {
				wantJSON = []any{}
			}
			is.Equal(r.obj()["resources"], wantJSON) // the ack's resources
			rs, _ := r.obj()["resources"].([]any)
			for _, res := range rs {
				is.Equal(sessKeys(res), sessResourceKeys) // each resource is exactly {type, url, mount_path}
			}
			id, _ := r.obj()["id"].(string)
			ids = append(ids, id)
			got := a.do("GET", "/sessions/"+id, tok, nil)
			noToken(is, got)
			is.Equal(got.obj()["resources"], wantJSON) // GET returns the same resources
		}
	}
	res := func(url, mount string) map[string]any {
		return map[string]any{"type": "github_repository", "url": url, "mount_path": mount}
	}
	a.run(t, "", []scenario{
		{name: "11 resources", method: "POST", path: "/sessions", token: tok, body: body(repos(11)...), wantStatus: 422,
			check: sessWantMsg("Maximum 10 resources per session", "resources")},
		{name: "gitlab URL", method: "POST", path: "/sessions", token: tok, body: body(repo("https://gitlab.com/a/b")), wantStatus: 422,
			check: sessWantMsg("Must be a valid https://github.com/<owner>/<repo> URL", "resources", 0, "url")},
		{name: "http URL", method: "POST", path: "/sessions", token: tok, body: body(repo("http://github.com/a/b")), wantStatus: 422,
			check: sessWantLoc("resources", 0, "url")},
		{name: "URL with a deeper path", method: "POST", path: "/sessions", token: tok, body: body(repo("https://github.com/a/b/c")), wantStatus: 422,
			check: sessWantLoc("resources", 0, "url")},
		{name: "relative mount_path", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/a/b", "mount_path", "work/b")), wantStatus: 422,
			check: sessWantMsg("mount_path must be an absolute path", "resources", 0, "mount_path")},
		{name: "mount_path /home/sprite", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/a/b", "mount_path", "/home/sprite")), wantStatus: 422,
			check: sessWantMsg("mount_path must not be the Sprite root", "resources", 0, "mount_path")},
		{name: "mount_path /", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/a/b", "mount_path", "/")), wantStatus: 422,
			check: sessWantMsg("mount_path must not be the Sprite root", "resources", 0, "mount_path")},
		{name: "duplicate explicit mount_path", method: "POST", path: "/sessions", token: tok,
			body:       body(repo("https://github.com/a/b", "mount_path", "/srv/x"), repo("https://github.com/a/c", "mount_path", "/srv/x")),
			wantStatus: 422, check: sessWantMsg("Duplicate mount_path in resources", "resources")},
		{name: "duplicate default mount_path", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/a/b"), repo("https://github.com/c/b.git")), wantStatus: 422, check: sessWantLoc("resources")},
		{name: "missing url", method: "POST", path: "/sessions", token: tok,
			body: body(map[string]any{"type": "github_repository"}), wantStatus: 422, check: sessWantLoc("resources", 0, "url")},
		{name: "wrong type", method: "POST", path: "/sessions", token: tok,
			body: body(map[string]any{"type": "gitlab_repository", "url": "https://github.com/a/b"}), wantStatus: 422,
			check: sessWantLoc("resources", 0, "type")},
		{name: "resources not a list", method: "POST", path: "/sessions", token: tok,
			body: sessBody(agent, "true", "resources", "https://github.com/a/b"), wantStatus: 422, check: sessWantLoc("resources")},
		{name: "a 422 never echoes the token", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/a/b", "mount_path", "relative", "authorization_token", token)), wantStatus: 422,
			check: noToken},
		{name: "a 422 for a missing field never echoes the token", method: "POST", path: "/sessions", token: tok,
			body: body(map[string]any{"type": "github_repository", "authorization_token": token}), wantStatus: 422, check: noToken},
		{name: "a 422 elsewhere in the body never echoes the token", method: "POST", path: "/sessions", token: tok,
			body:       map[string]any{"agent_id": agent, "resources": []any{repo("https://github.com/a/b", "authorization_token", token)}},
			wantStatus: 422, check: noToken},
		{name: "no resources", method: "POST", path: "/sessions", token: tok, body: sessBody(agent, "true"), wantStatus: 202,
			check: wantResources()},
		{name: "10 resources", method: "POST", path: "/sessions", token: tok, body: body(repos(10)...), wantStatus: 202,
			check: func(is *is.I, r response) {
				rs, _ := r.obj()["resources"].([]any)
				is.Equal(len(rs), 10) // all ten
				ids = append(ids, fmt.Sprint(r.obj()["id"]))
			}},
		{name: ".git stripped and default mount", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/acme/widgets.git")), wantStatus: 202,
			check: wantResources(res("https://github.com/acme/widgets", "/workspace/widgets"))},
		{name: "explicit mount and a token, in order", method: "POST", path: "/sessions", token: tok,
			body: body(repo("https://github.com/acme/private", "mount_path", "/srv/code", "authorization_token", token),
				repo("https://github.com/acme/public")), wantStatus: 202,
			check: wantResources(res("https://github.com/acme/private", "/srv/code"), res("https://github.com/acme/public", "/workspace/public"))},
		{name: "the list never shows the token", method: "GET", path: "/sessions", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				noToken(is, r)
				is.Equal(len(r.data()), 4) // the four accepted sessions
			}},
	})
	// Repositories can't be cloned here; stop what is still provisioning.
	for _, id := range ids {
		if st := sessGet(a, tok, id)["status"]; st == "pending" || st == "running" {
			a.do("POST", "/sessions/"+id+"/terminate", tok, nil)
		}
	}
}

func TestSessionSecretEnvVars(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok)
	const secret = "zq-SECRET-value-6c1f9e"
	// The script compares without spelling the value: it must appear in no
	// response, the turn's prompt included.
	var escaped strings.Builder
	for _, b := range []byte(secret) {
		fmt.Fprintf(&escaped, `\x%02x`, b)
	}
	env, _ := a.mustCreate("/environments", tok, map[string]any{"name": "vars",
		"env_vars": map[string]any{"FROM_ENV": "env-value-1", "SHARED": "from-environment"}})["id"].(string)

	bad := a.do("POST", "/sessions", tok, sessBody(agent, "true", "secret_env_vars", map[string]any{"BAD-NAME": secret}))
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // an invalid name is a 422
	is.True(strings.Contains(bad.detail(), "BAD-NAME"))  // naming the key
	is.True(!strings.Contains(string(bad.Raw), secret))  // but never the value
	bad = a.do("POST", "/sessions", tok, sessBody(agent, "", "secret_env_vars", map[string]any{"OK": secret}))
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // a 422 for another field
	is.True(!strings.Contains(string(bad.Raw), secret))  // never echoes a secret either
	bad = a.do("POST", "/sessions", tok, map[string]any{"agent_id": agent, "secret_env_vars": map[string]any{"OK": secret}})
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // missing prompt
	is.True(!strings.Contains(string(bad.Raw), secret))  // the 422's input hides the secret
	bad = a.do("POST", "/sessions", tok, sessBody(agent, "true", "secret_env_vars", map[string]any{"OK": 5}))
	is.Equal(bad.Status, http.StatusUnprocessableEntity) // a value that is not a string

	script := `test "$MY_SECRET" = "$(printf '` + escaped.String() + `')" && echo ok
echo "env=$FROM_ENV shared=$SHARED"`
	r := a.do("POST", "/sessions", tok, sessBody(agent, script, "environment_id", env,
		"secret_env_vars", map[string]any{"MY_SECRET": secret, "SHARED": "from-secret"}))
	is.Equal(r.Status, http.StatusAccepted)           // accepted
	is.True(!strings.Contains(string(r.Raw), secret)) // the ack doesn't show the secret
	id, _ := r.obj()["id"].(string)
	s := sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "exit")                                            // the session ran
	is.Equal(s.last().Data["code"], float64(0))                                 // and succeeded
	is.Equal(s.output("stdout", 1), "ok\nenv=env-value-1 shared=from-secret\n") // the secret and the environment's vars reach the process, secrets winning
	is.True(!strings.Contains(string(s.Raw), secret))                           // the stream doesn't show the secret

	for _, path := range []string{"/sessions/" + id, "/sessions", "/sessions/" + id + "/turns"} {
		got := a.do("GET", path, tok, nil)
		is.Equal(got.Status, http.StatusOK)                 // readable
		is.True(!strings.Contains(string(got.Raw), secret)) // never shows the secret
	}
	turns := a.do("GET", "/sessions/"+id+"/turns", tok, nil).data()
	is.Equal(turns[0].(map[string]any)["prompt"], script) // the turn keeps the prompt as sent
}

// ---------------------------------------------------------------- reads

func TestSessionList(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	is := is.New(t)
	r := a.do("GET", "/sessions", tok, nil)
	is.Equal(r.Status, http.StatusOK)                         // an empty list
	is.Equal(r.obj(), map[string]any{"data": []any{}})        // is {"data": []}
	is.Equal(strings.TrimSpace(string(r.Raw)), `{"data":[]}`) // with an empty array, not null

	agent := sessShellAgent(a, tok)
	completed := sessStart(a, tok, sessBody(agent, "echo done"))
	failed := sessStart(a, tok, sessBody(agent, "exit 4"))
	terminated := sessStart(a, tok, sessBody(agent, "sleep 30"))
	sessWaitStatus(a, tok, terminated, "running")
	is.Equal(a.do("POST", "/sessions/"+terminated+"/terminate", tok, nil).Status, http.StatusOK) // terminate the third
	running := sessStart(a, tok, sessBody(agent, "sleep 30"))
	sessWaitStatus(a, tok, running, "running")
	sessFinish(a, tok, completed)
	sessFinish(a, tok, failed)
	bobs := sessStart(a, bob, sessBody(sessShellAgent(a, bob), "true"))

	r = a.do("GET", "/sessions", tok, nil)
	is.Equal(r.Status, http.StatusOK) // list
	var ids, statuses []string
	for _, it := range r.data() {
		m, _ := it.(map[string]any)
		is.Equal(sessKeys(m), sessSessionKeys) // each item is exactly the session shape, no prompt
		ids = append(ids, fmt.Sprint(m["id"]))
		statuses = append(statuses, fmt.Sprint(m["status"]))
	}
	is.Equal(ids, []string{running, terminated, failed, completed})              // newest first, only the caller's
	is.Equal(statuses, []string{"running", "terminated", "failed", "completed"}) // every status is listed
	is.True(!strings.Contains(string(r.Raw), `"prompt"`))                        // no prompt anywhere

	r = a.do("GET", "/sessions", bob, nil)
	is.Equal(len(r.data()), 1)                                                                // bob sees one session
	is.Equal(r.data()[0].(map[string]any)["id"], bobs)                                        // his own
	is.Equal(a.do("POST", "/sessions/"+running+"/terminate", tok, nil).Status, http.StatusOK) // clean up
}

func TestSessionGet(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	env, _ := a.mustCreate("/environments", tok, map[string]any{"name": "e"})["id"].(string)
	agent := sessShellAgent(a, tok, "environment_id", env)
	id := sessStart(a, tok, sessBody(agent, "echo hi"))
	sessFinish(a, tok, id)
	a.run(t, id, []scenario{
		{name: "own session", method: "GET", path: "/sessions/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				got := r.obj()
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
		{name: "upper-case id", method: "GET", path: "/sessions/" + strings.ToUpper(id), token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["id"], id) // the canonical id
			}},
		{name: "another user's", method: "GET", path: "/sessions/{id}", token: bob, wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "unknown", method: "GET", path: "/sessions/" + sessMissingID, token: tok, wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "not a UUID", method: "GET", path: "/sessions/not-a-uuid", token: tok, wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "turns of another user's", method: "GET", path: "/sessions/{id}/turns", token: bob, wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "turns of unknown", method: "GET", path: "/sessions/" + sessMissingID + "/turns", token: tok, wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "turns of not a UUID", method: "GET", path: "/sessions/nope/turns", token: tok, wantStatus: 404, check: sessExactDetail("Session not found")},
	})
}

// ---------------------------------------------------------------- lifecycle

func TestSessionMultiTurn(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok, "system", "echo sys-marker-7f3")
	id := sessStart(a, tok, sessBody(agent, "echo remembered > note.txt\necho turn-one"))

	s := sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "exit")            // turn 1 ends
	is.Equal(s.last().Data["code"], float64(0)) // with exit 0
	got := sessGet(a, tok, id)
	is.Equal(got["status"], "completed")   // completed
	is.Equal(got["exit_code"], float64(0)) // exit_code 0
	is.Equal(got["provider"], "local")     // the shell agent's provider

	r := a.do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "cat note.txt", "timeout": 60})
	is.Equal(r.Status, http.StatusAccepted) // a completed session takes a prompt
	wantAck := map[string]any{"id": id, "status": "pending", "stream_url": "/sessions/" + id + "/stream", "current_turn": float64(2)}
	is.Equal(r.obj(), wantAck)                     // the prompt ack exactly
	is.Equal(sessKeys(r.obj()), sessPromptAckKeys) // and nothing else

	s = sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "exit")                              // turn 2 ends
	is.Equal(s.last().Data["code"], float64(0))                   // with exit 0
	is.Equal(s.output("stdout", 1), "sys-marker-7f3\nturn-one\n") // turn 1 ran the system prompt, then the prompt
	is.Equal(s.output("stdout", 2), "remembered\n")               // turn 2 sees turn 1's file, without the system prompt
	var turnStarts []float64
	for _, e := range s.Events {
		if e.typ() == "turn_start" {
			turnStarts = append(turnStarts, e.Data["turn"].(float64))
		}
	}
	is.Equal(turnStarts, []float64{1, 2}) // one turn_start per turn

	got = sessGet(a, tok, id)
	is.Equal(got["status"], "completed")      // completed again
	is.Equal(got["turn_count"], float64(2))   // two turns
	is.Equal(got["current_turn"], float64(2)) // the current one is 2

	turns := a.do("GET", "/sessions/"+id+"/turns", tok, nil)
	is.Equal(turns.Status, http.StatusOK) // turns
	is.Equal(len(turns.data()), 2)        // both
	for i, want := range []string{"echo remembered > note.txt\necho turn-one", "cat note.txt"} {
		turn, _ := turns.data()[i].(map[string]any)
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
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	agent := sessShellAgent(a, tok)
	id := sessStart(a, tok, sessBody(agent, "true"))
	sessFinish(a, tok, id)
	a.run(t, id, []scenario{
		{name: "invalid JSON", method: "POST", path: "/sessions/{id}/prompt", token: tok, body: `{"prompt"`, wantStatus: 400,
			check: sessExactDetail("Invalid JSON")},
		{name: "missing prompt", method: "POST", path: "/sessions/{id}/prompt", token: tok, body: map[string]any{}, wantStatus: 422,
			check: sessWantLoc("prompt")},
		{name: "empty prompt", method: "POST", path: "/sessions/{id}/prompt", token: tok, body: map[string]any{"prompt": ""}, wantStatus: 422,
			check: sessWantLoc("prompt")},
		{name: "timeout 5", method: "POST", path: "/sessions/{id}/prompt", token: tok, body: map[string]any{"prompt": "true", "timeout": 5},
			wantStatus: 422, check: sessWantLoc("timeout")},
		{name: "timeout soon", method: "POST", path: "/sessions/{id}/prompt", token: tok, body: map[string]any{"prompt": "true", "timeout": "soon"},
			wantStatus: 422, check: sessWantLoc("timeout")},
		{name: "unknown session", method: "POST", path: "/sessions/" + sessMissingID + "/prompt", token: tok, body: map[string]any{"prompt": "true"},
			wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "another user's session", method: "POST", path: "/sessions/{id}/prompt", token: bob, body: map[string]any{"prompt": "true"},
			wantStatus: 404, check: sessExactDetail("Session not found")},
		{name: "nothing was queued", method: "GET", path: "/sessions/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["turn_count"], float64(1)) // still one turn
				is.Equal(r.obj()["status"], "completed")    // still completed
			}},
		{name: "a valid prompt", method: "POST", path: "/sessions/{id}/prompt", token: tok, body: map[string]any{"prompt": "true"},
			wantStatus: 202, check: func(is *is.I, r response) {
				is.Equal(r.obj()["current_turn"], float64(2)) // turn 2
			}},
	})
	is.New(t).Equal(sessFinish(a, tok, id).last().typ(), "exit") // turn 2 runs
}

func TestSessionPendingAndRunningConflicts(t *testing.T) {
	a := newAPIWith(t, apiOptions{maxRunning: 1})
	tok := a.token("alice")
	agent := sessShellAgent(a, tok)
	running := sessStart(a, tok, sessBody(agent, "sleep 30"))
	sessWaitStatus(a, tok, running, "running")
	pending := sessStart(a, tok, sessBody(agent, "echo second"))
	is.New(t).Equal(sessGet(a, tok, pending)["status"], "pending") // the only runner slot is taken: it waits

	a.run(t, "", []scenario{
		{name: "prompt while running", method: "POST", path: "/sessions/" + running + "/prompt", token: tok,
			body: map[string]any{"prompt": "true"}, wantStatus: 409, check: sessExactDetail("Session is already running")},
		{name: "prompt while running, state before body", method: "POST", path: "/sessions/" + running + "/prompt", token: tok,
			body: `{bad`, wantStatus: 409, check: sessExactDetail("Session is already running")},
		{name: "delete while running", method: "DELETE", path: "/sessions/" + running + "/delete", token: tok,
			wantStatus: 409, check: sessExactDetail("Cannot delete an active session")},
		{name: "prompt while pending", method: "POST", path: "/sessions/" + pending + "/prompt", token: tok,
			body: map[string]any{"prompt": "true"}, wantStatus: 409, check: sessExactDetail("Session already has a pending turn")},
		{name: "delete while pending", method: "DELETE", path: "/sessions/" + pending + "/delete", token: tok,
			wantStatus: 409, check: sessExactDetail("Cannot delete an active session")},
		{name: "no turn was added", method: "GET", path: "/sessions/" + pending + "/turns", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 1) // one turn
			}},
		{name: "terminate while pending", method: "POST", path: "/sessions/" + pending + "/terminate", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj(), map[string]any{"id": pending, "status": "terminated"}) // exactly {id, status}
			}},
		{name: "terminate while running", method: "POST", path: "/sessions/" + running + "/terminate", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj(), map[string]any{"id": running, "status": "terminated"}) // exactly {id, status}
			}},
	})
	is := is.New(t)
	// A session queued behind the terminated one runs: the terminated one
	// no longer holds the queue. (It also means the runner has let go of
	// the terminated job before the test's cleanup shuts it down.)
	next := sessStart(a, tok, sessBody(agent, "echo next"))
	is.Equal(sessFinish(a, tok, next).output("stdout", 1), "next\n") // the next session ran
	s := sessFinish(a, tok, pending)
	is.Equal(s.last().typ(), "terminated") // the pending session's stream ends terminated
	is.Equal(s.output("stdout", 0), "")    // its turn never ran
	turns := a.do("GET", "/sessions/"+pending+"/turns", tok, nil).data()
	is.Equal(turns[0].(map[string]any)["status"], "failed")    // its queued turn ended failed (a turn status the SDK knows)
	is.Equal(sessGet(a, tok, pending)["status"], "terminated") // and the session stays terminated
}

func TestSessionFailedExit(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok)
	id := sessStart(a, tok, sessBody(agent, "echo out; echo err >&2; exit 3"))
	s := sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "exit")            // a non-zero exit ends with exit
	is.Equal(s.last().Data["code"], float64(3)) // carrying the code
	is.Equal(s.output("stdout", 1), "out\n")    // stdout
	is.Equal(s.output("stderr", 1), "err\n")    // stderr, separately
	got := sessGet(a, tok, id)
	is.Equal(got["status"], "failed")      // failed
	is.Equal(got["exit_code"], float64(3)) // with exit_code 3
	turns := a.do("GET", "/sessions/"+id+"/turns", tok, nil).data()
	is.Equal(turns[0].(map[string]any)["exit_code"], float64(3)) // the turn has the code too
	is.Equal(turns[0].(map[string]any)["status"], "failed")      // and failed

	r := a.do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "true"})
	is.Equal(r.Status, http.StatusConflict)                                                                       // a failed session takes no prompt
	is.Equal(r.obj(), map[string]any{"detail": "Session has failed and cannot be resumed. Start a new session."}) // exact detail
	r = a.do("POST", "/sessions/"+id+"/terminate", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                   // a failed session can be terminated
	is.Equal(r.obj(), map[string]any{"id": id, "status": "terminated"}) // exactly {id, status}
	r = a.do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                              // then deleted
	is.Equal(r.obj(), map[string]any{"detail": "Session deleted"}) // exact body

	// A failed session can be deleted without terminating it first.
	other := sessStart(a, tok, sessBody(agent, "exit 1"))
	sessFinish(a, tok, other)
	r = a.do("DELETE", "/sessions/"+other+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                               // delete a failed session
	is.Equal(a.do("GET", "/sessions/"+other, tok, nil).Status, http.StatusNotFound) // gone
}

func TestSessionTerminateRunning(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok)
	id := sessStart(a, tok, sessBody(agent, "echo started\nsleep 1000 & sleep 1000"))
	early := sessStreamUntil(a, tok, id, "", nil, func(e sessEvent) bool { return e.typ() == "output" })
	is.Equal(early.output("stdout", 1), "started\n") // the turn is under way
	is.True(sessWaitProcs(id, "sleep", 2))           // the script and its background child are running

	status, body, err := sessDoWithin(a, 10*time.Second, "POST", "/sessions/"+id+"/terminate", tok)
	is.NoErr(err)                                                    // terminate answers at once, not when the sleeps end
	is.Equal(status, http.StatusOK)                                  // 200
	is.Equal(body, map[string]any{"id": id, "status": "terminated"}) // exactly {id, status}
	is.Equal(sessWaitNoProcs(id, 10*time.Second), []string(nil))     // every process of the turn is gone, the background sleep too

	got := sessGet(a, tok, id)
	is.Equal(got["status"], "terminated") // terminated
	r := a.do("POST", "/sessions/"+id+"/terminate", tok, nil)
	is.Equal(r.Status, http.StatusConflict)                                      // terminate again
	is.Equal(r.obj(), map[string]any{"detail": "Session is already terminated"}) // exact detail
	r = a.do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "true"})
	is.Equal(r.Status, http.StatusConflict)                                    // prompt a terminated session
	is.Equal(r.obj(), map[string]any{"detail": "Session has been terminated"}) // exact detail

	s := sessFinish(a, tok, id)
	is.Equal(s.Events[0].typ(), "start")                     // the replay starts with start
	is.Equal(s.last().typ(), "terminated")                   // and ends with terminated
	is.Equal(s.last().Data["message"], "Session terminated") // the contract's message
	is.Equal(s.output("stdout", 1), "started\n")             // the output before the terminate is kept
	is.True(s.Closed)                                        // the stream closed
	is.Equal(sessGet(a, tok, id)["status"], "terminated")    // the ended turn did not overwrite the status

	r = a.do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                              // delete
	is.Equal(r.obj(), map[string]any{"detail": "Session deleted"}) // exact body
	r = a.do("GET", "/sessions/"+id, tok, nil)
	is.Equal(r.Status, http.StatusNotFound)                                                // gone
	is.Equal(r.obj(), map[string]any{"detail": "Session not found"})                       // exact detail
	is.Equal(a.do("GET", "/sessions/"+id+"/turns", tok, nil).Status, http.StatusNotFound)  // turns gone
	is.Equal(a.do("GET", "/sessions/"+id+"/stream", tok, nil).Status, http.StatusNotFound) // stream gone
	r = a.do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusNotFound) // delete again
	is.Equal(sessCount(a, tok), 0)          // the list is empty
}

func TestSessionTerminateCompleted(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	id := sessStart(a, tok, sessBody(sessShellAgent(a, tok), "echo done"))
	is.Equal(sessFinish(a, tok, id).last().typ(), "exit") // completed
	r := a.do("POST", "/sessions/"+id+"/terminate", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                   // a completed session can be terminated
	is.Equal(r.obj(), map[string]any{"id": id, "status": "terminated"}) // exactly {id, status}
	s := sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "terminated")    // its stream now ends terminated
	is.Equal(s.output("stdout", 1), "done\n") // after replaying the output
	r = a.do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "true"})
	is.Equal(r.detail(), "Session has been terminated") // no more prompts
	r = a.do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK) // delete
}

func TestSessionDeleteCompleted(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	id := sessStart(a, tok, sessBody(sessShellAgent(a, tok), "echo done"))
	sessFinish(a, tok, id)
	r := a.do("DELETE", "/sessions/"+id+"/delete", bob, nil)
	is.Equal(r.Status, http.StatusNotFound)                          // not bob's
	is.Equal(r.obj(), map[string]any{"detail": "Session not found"}) // exact detail
	r = a.do("DELETE", "/sessions/"+id+"/delete", tok, nil)
	is.Equal(r.Status, http.StatusOK)                                                                    // a completed session is deleted without terminate
	is.Equal(r.obj(), map[string]any{"detail": "Session deleted"})                                       // exact body
	is.Equal(a.do("GET", "/sessions/"+id, tok, nil).Status, http.StatusNotFound)                         // gone
	is.Equal(a.do("DELETE", "/sessions/"+sessMissingID+"/delete", tok, nil).Status, http.StatusNotFound) // unknown
}

func TestSessionTimeout(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	id := sessStart(a, tok, sessBody(sessShellAgent(a, tok), "echo begin\nsleep 1000 & sleep 1000", "timeout", 10))
	is.True(sessWaitProcs(id, "sleep", 2)) // the script and its background child are running
	s := sessFinish(a, tok, id)
	is.Equal(s.last().typ(), "error")                                              // a timed-out turn ends with error
	is.Equal(s.last().Data["message"], "Session failed: turn timed out after 10s") // with the reason
	is.Equal(s.output("stdout", 1), "begin\n")                                     // its output is kept
	got := sessGet(a, tok, id)
	is.Equal(got["status"], "failed") // failed
	is.Equal(got["exit_code"], nil)   // without an exit code
	turns := a.do("GET", "/sessions/"+id+"/turns", tok, nil).data()
	is.Equal(turns[0].(map[string]any)["status"], "failed")      // the turn failed
	is.Equal(turns[0].(map[string]any)["exit_code"], nil)        // without an exit code
	is.Equal(sessWaitNoProcs(id, 10*time.Second), []string(nil)) // the background sleep was killed too
}

// ---------------------------------------------------------------- stream

func TestSessionStreamErrors(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	id := sessStart(a, tok, sessBody(sessShellAgent(a, tok), "echo hi"))

	for _, c := range []struct {
		name, tok, path string
	}{
		{"unknown", tok, sessMissingID},
		{"not a UUID", tok, "nope"},
		{"another user's", bob, id},
	} {
		s := sessStream(a, c.tok, c.path, "", nil)
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
		s := sessStream(a, tok, id, c.query, c.headers)
		is.Equal(s.Status, http.StatusBadRequest)                                   // a non-integer cursor is a 400
		is.Equal(s.Body, map[string]any{"detail": "since must be an integer"})      // exact body
		is.True(strings.Contains(s.Header.Get("Content-Type"), "application/json")) // as JSON
	}
	s := sessFinish(a, tok, id)
	is.Equal(s.Header.Get("Content-Type"), "text/event-stream") // exactly text/event-stream
	is.Equal(s.Header.Get("Cache-Control"), "no-cache")         // no-cache
	is.Equal(s.Header.Get("X-Accel-Buffering"), "no")           // no proxy buffering
	s = sessStream(a, tok, id, "?since=-5", nil)
	is.Equal(s.Status, http.StatusOK)       // a negative cursor clamps to 0
	is.Equal(s.output("stdout", 1), "hi\n") // and replays everything
	s = sessStream(a, tok, id, "?since=1", map[string]string{"Last-Event-ID": "999999"})
	is.Equal(s.Status, http.StatusOK)              // the header wins over since
	is.Equal(s.output("stdout", 0), "")            // nothing after id 999999
	is.Equal(s.types(), []string{"start", "exit"}) // just start and the terminal event
}

// TestSessionQuickstart follows api.md §9 with the shell agent: create an
// agent, a session with a timeout of 120, stream it, archive the agent.
func TestSessionQuickstart(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	agentRes := a.do("POST", "/agents", tok, map[string]any{"name": "hello", "model": "local/shell", "runtime": "shell"})
	is.Equal(agentRes.Status, http.StatusCreated) // the agent
	agent, _ := agentRes.obj()["id"].(string)

	r := a.do("POST", "/sessions", tok, map[string]any{"agent_id": agent, "prompt": "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.2; done", "timeout": 120})
	is.Equal(r.Status, http.StatusAccepted) // the session
	id, _ := r.obj()["id"].(string)

	s := sessStream(a, tok, id, "", nil)
	is.Equal(s.Status, http.StatusOK)                                     // streaming
	is.True(s.Closed)                                                     // the server closes the stream after the terminal event
	is.True(strings.HasPrefix(string(s.Raw), `data: {"type": "start", `)) // start first, json.dumps style, no id: line
	first := s.Events[0]
	is.Equal(first.typ(), "start")            // start
	is.Equal(first.Data["session_id"], id)    // names the session
	is.Equal(first.Data["provider"], "local") // and the provider
	is.Equal(first.Data["runtime"], "shell")  // and the runtime
	is.Equal(first.IDLine, "")                // without an id: line

	// start, stage events, turn_start, outputs, exit.
	var phase []string
	for _, e := range s.Events[1:] {
		if len(phase) == 0 || phase[len(phase)-1] != e.typ() {
			phase = append(phase, e.typ())
		}
	}
	is.Equal(phase, []string{"stage", "turn_start", "output", "exit"}) // the events in the contract's order
	var stages []string
	var lastID int64
	var outputs []sessEvent
	for i, e := range s.Events[1:] {
		switch e.typ() {
		case "stage":
			stages = append(stages, fmt.Sprint(e.Data["stage"], ":", e.Data["state"]))
			if e.Data["state"] == "done" {
				_, ok := e.Data["duration_ms"].(float64)
				is.True(ok) // done stages carry duration_ms
			}
		case "turn_start":
			is.Equal(e.IDLine, "")               // turn_start has no id: line
			is.Equal(e.Data["turn"], float64(1)) // for turn 1
			is.Equal(e.id(), s.Events[i+2].id()) // its id is the next output's
		case "output":
			outputs = append(outputs, e)
			is.Equal(e.Data["turn"], float64(1)) // output of turn 1
		}
		if e.typ() != "turn_start" && !sessIsTerminal(e.typ()) {
			is.Equal(e.IDLine, strconv.FormatInt(e.id(), 10)) // the id: line is the JSON id
			is.True(e.id() > lastID)                          // ids increase
			lastID = e.id()
		}
		is.True(strings.HasPrefix(e.JSON, `{"type": `)) // type is the first key
	}
	is.Equal(stages[0], "create_sprite:started")             // provisioning starts with create_sprite
	is.Equal(stages[len(stages)-1], "runtime_start:started") // and ends with runtime_start
	exit := s.last()
	is.Equal(exit.Data["code"], float64(0))                                             // exit code 0
	is.Equal(exit.id(), lastID)                                                         // the terminal id repeats the last row id
	is.Equal(exit.IDLine, strconv.FormatInt(lastID, 10))                                // on its id: line too
	is.Equal(s.output("stdout", 1), "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n") // the script's output
	is.True(len(outputs) >= 4)                                                          // printed over time, the lines arrive as several events

	// Re-stream after completion replays start, output and exit.
	again := sessStream(a, tok, id, "", nil)
	is.Equal(again.types(), s.types())         // the same events
	is.Equal(string(again.Raw), string(s.Raw)) // byte for byte

	// Reconnect after the third output: only later events.
	third := outputs[2].IDLine
	resumed := sessStream(a, tok, id, "", map[string]string{"Last-Event-ID": third})
	is.Equal(resumed.Events[0].typ(), "start") // a resume starts with start
	cut, _ := strconv.ParseInt(third, 10, 64)
	for _, e := range resumed.Events[1:] {
		if e.typ() != "turn_start" && !sessIsTerminal(e.typ()) {
			is.True(e.id() > cut) // only events after the cursor
		}
	}
	is.Equal(resumed.Events[1].typ(), "turn_start") // a resume re-announces the turn
	is.Equal(resumed.last().typ(), "exit")          // and ends with exit
	var rest strings.Builder
	for _, o := range outputs[3:] {
		rest.WriteString(o.Data["data"].(string))
	}
	is.Equal(resumed.output("stdout", 1), rest.String()) // exactly the output after the third event
	viaSince := sessStream(a, tok, id, "?since="+third, nil)
	is.Equal(string(viaSince.Raw), string(resumed.Raw)) // ?since= resumes the same way

	arch := a.do("POST", "/agents/"+agent+"/archive", tok, nil)
	is.Equal(arch.Status, http.StatusOK)                 // archive the agent
	is.True(arch.obj()["archived_at"] != nil)            // archived
	is.Equal(sessGet(a, tok, id)["status"], "completed") // the session is unaffected
}

// ---------------------------------------------------------------- routes

func TestSessionMethodNotAllowed(t *testing.T) {
	a := newAPI(t)
	notAllowed := func(allow string) func(*is.I, response) {
		return func(is *is.I, r response) {
			is.Equal(r.obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405 body
			is.True(strings.Contains(r.Header.Get("Allow"), allow))           // Allow names the route's method
		}
	}
	rows := []scenario{
		{name: "PATCH /sessions", method: "PATCH", path: "/sessions", wantStatus: 405, check: notAllowed("POST")},
		{name: "DELETE /sessions", method: "DELETE", path: "/sessions", wantStatus: 405, check: notAllowed("GET")},
		{name: "DELETE /sessions/{id}", method: "DELETE", path: "/sessions/{id}", wantStatus: 405, check: notAllowed("GET")},
		{name: "POST /sessions/{id}/delete", method: "POST", path: "/sessions/{id}/delete", wantStatus: 405, check: notAllowed("DELETE")},
		{name: "GET /sessions/{id}/terminate", method: "GET", path: "/sessions/{id}/terminate", wantStatus: 405, check: notAllowed("POST")},
		{name: "GET /sessions/{id}/prompt", method: "GET", path: "/sessions/{id}/prompt", wantStatus: 405, check: notAllowed("POST")},
		{name: "POST /sessions/{id}/stream", method: "POST", path: "/sessions/{id}/stream", wantStatus: 405, check: notAllowed("GET")},
		{name: "POST /sessions/{id}/turns", method: "POST", path: "/sessions/{id}/turns", wantStatus: 405, check: notAllowed("GET")},
	}
	var all []scenario
	for _, sc := range rows {
		all = append(all, sc)
		bad := sc
		bad.name += " with an invalid token"
		bad.token = "aod_invalid_key"
		all = append(all, bad)
	}
	a.run(t, sessMissingID, all)
}

func TestSessionAuthRequired(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := sessStart(a, tok, sessBody(sessShellAgent(a, tok), "true"))
	sessFinish(a, tok, id)
	unauthorized := func(is *is.I, r response) {
		d, _ := r.obj()["detail"].(string)
		is.True(d != "") // a JSON detail
	}
	var rows []scenario
	for _, c := range []struct{ method, path string }{
		{"POST", "/sessions"}, {"GET", "/sessions"}, {"GET", "/sessions/{id}"}, {"GET", "/sessions/{id}/turns"},
		{"POST", "/sessions/{id}/prompt"}, {"POST", "/sessions/{id}/terminate"}, {"DELETE", "/sessions/{id}/delete"},
		{"GET", "/sessions/{id}/stream"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"prompt": "true"}
		}
		for _, tk := range []struct{ name, token string }{{"no token", ""}, {"invalid token", "aod_invalid_key"}} {
			rows = append(rows, scenario{name: c.method + " " + c.path + " " + tk.name, method: c.method, path: c.path,
				token: tk.token, body: body, wantStatus: 401, check: unauthorized})
		}
	}
	rows = append(rows, scenario{name: "nothing changed", method: "GET", path: "/sessions/{id}", token: tok, wantStatus: 200,
		check: func(is *is.I, r response) {
			is.Equal(r.obj()["status"], "completed")    // not terminated
			is.Equal(r.obj()["turn_count"], float64(1)) // no prompt queued
		}})
	a.run(t, id, rows)
}

func TestSessionOwnership(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	bob := a.token("bob")
	sessShellAgent(a, bob) // bob exists and has an agent of his own
	id := sessStart(a, tok, sessBody(sessShellAgent(a, tok), "echo mine"))
	sessFinish(a, tok, id)
	notFound := sessExactDetail("Session not found")
	a.run(t, id, []scenario{
		{name: "GET", method: "GET", path: "/sessions/{id}", token: bob, wantStatus: 404, check: notFound},
		{name: "turns", method: "GET", path: "/sessions/{id}/turns", token: bob, wantStatus: 404, check: notFound},
		{name: "prompt", method: "POST", path: "/sessions/{id}/prompt", token: bob, body: map[string]any{"prompt": "true"}, wantStatus: 404, check: notFound},
		{name: "prompt with a bad body", method: "POST", path: "/sessions/{id}/prompt", token: bob, body: `{bad`, wantStatus: 404, check: notFound},
		{name: "terminate", method: "POST", path: "/sessions/{id}/terminate", token: bob, wantStatus: 404, check: notFound},
		{name: "delete", method: "DELETE", path: "/sessions/{id}/delete", token: bob, wantStatus: 404, check: notFound},
		{name: "stream", method: "GET", path: "/sessions/{id}/stream", token: bob, wantStatus: 404, check: notFound},
		{name: "bob's list", method: "GET", path: "/sessions", token: bob, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 0) // alice's session is not in bob's list
			}},
		{name: "alice's session untouched", method: "GET", path: "/sessions/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["status"], "completed")    // not terminated, not deleted
				is.Equal(r.obj()["turn_count"], float64(1)) // no prompt queued
			}},
	})
}

// mount_path values that could only fail at provisioning are refused at
// create, naming the field; no session is stored.
func TestSessionMountPathRefusedAtCreate(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	agent := sessShellAgent(a, tok)
	for _, mp := range []string{"/etc/passwd", "/usr/bin", "/bin", "/lib", "/dev", "/proc/self", "/tmp", "/a\x00b",
		"/" + strings.Repeat("d", 5000)} {
		t.Run(fmt.Sprintf("%.20q", mp), func(t *testing.T) {
			is := is.New(t)
			r := a.do("POST", "/sessions", tok, sessBody(agent, "true", "resources", []any{
				map[string]any{"type": "github_repository", "url": "https://github.com/acme/r", "mount_path": mp}}))
			is.Equal(r.Status, http.StatusUnprocessableEntity) // refused now, not at provisioning
			items, _ := r.obj()["detail"].([]any)
			is.True(len(items) > 0) // a list detail
			first, _ := items[0].(map[string]any)
			is.Equal(first["loc"], []any{"resources", float64(0), "mount_path"}) // naming the field
			is.True(len(r.Raw) < 4<<10)                                          // and bounded
		})
	}
	is.New(t).Equal(len(a.do("GET", "/sessions", tok, nil).data()), 0) // nothing was stored
}
