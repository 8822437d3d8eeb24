package sse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
)

// patience bounds every wait for the stream; it is a deadlock guard, not a
// latency assertion.
const patience = 5 * time.Second

// fixture is a fresh store with one user and one shell agent.
type fixture struct {
	t       *testing.T
	db      *store.DB
	userID  string
	agentID string
	hub     *sse.Hub // the last one serve started
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	u, err := db.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	a, err := db.CreateAgent(ctx, u.ID, store.AgentInput{Name: "sh",
		Model: store.Model{Runtime: "shell", Provider: "local", Model: "local/shell"}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, db: db, userID: u.ID, agentID: a.ID}
}

// must fails the test on a store error (setup, not the behaviour under test).
func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) session() string {
	f.t.Helper()
	s, err := f.db.CreateSession(context.Background(), f.userID, store.SessionInput{AgentID: f.agentID, Prompt: "echo hi", Timeout: 600})
	f.must(err)
	return s.ID
}

func (f *fixture) append(id string, e store.Event) int64 {
	f.t.Helper()
	evs := []store.Event{e}
	f.must(f.db.AppendEvents(context.Background(), id, evs))
	return evs[0].ID
}

func (f *fixture) output(id string, turn int, stream, data string) int64 {
	f.t.Helper()
	return f.append(id, store.Event{Kind: store.KindOutput, Turn: turn, Stream: stream, Data: data})
}

func (f *fixture) stage(id, stage, state string, durMS int64, msg string) int64 {
	f.t.Helper()
	e := store.Event{Kind: store.KindStage, Stage: stage, State: state, Data: msg}
	if state != store.StageStarted {
		e.DurationMS = &durMS
	}
	return f.append(id, e)
}

func (f *fixture) startTurn(id string, turn int) {
	f.t.Helper()
	ok, err := f.db.StartTurn(context.Background(), id, turn)
	f.must(err)
	if !ok {
		f.t.Fatalf("turn %d of %s did not start", turn, id)
	}
}

func (f *fixture) finishTurn(id string, turn int, r store.TurnResult) {
	f.t.Helper()
	f.must(f.db.FinishTurn(context.Background(), id, turn, r))
}

func (f *fixture) prompt(id string) {
	f.t.Helper()
	f.must(f.db.SetProvisionState(context.Background(), id, store.ProvisionDone))
	_, err := f.db.PromptSession(context.Background(), f.userID, id, "again", 600)
	f.must(err)
}

func code(n int) store.TurnResult { return store.TurnResult{ExitCode: &n} }

// serve starts a real HTTP server whose handler does what the API server
// does around Stream. Stream's return values go to the returned channel.
func (f *fixture) serve(cfg sse.Config) (*httptest.Server, <-chan error) {
	returned := make(chan error, 16)
	hub := sse.NewHub(f.db, cfg)
	f.hub = hub
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions/{id}/stream", func(w http.ResponseWriter, r *http.Request) {
		cursor, err := sse.ParseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		returned <- hub.Stream(w, r, "alice", r.PathValue("id"), cursor)
	})
	srv := httptest.NewServer(mux)
	f.t.Cleanup(srv.Close)
	return srv, returned
}

func streamURL(srv *httptest.Server, id string) string {
	return srv.URL + "/sessions/" + id + "/stream"
}

// finishedSession is two turns with provisioning stages, ending with exit 0.
// Ids are 1..8 in a fresh store: stages 1-3, turn 1 output 4-5, stage 6,
// turn 2 output 7-8.
func (f *fixture) finishedSession() string {
	f.t.Helper()
	id := f.session()
	f.stage(id, "create_sprite", store.StageStarted, 0, "")
	f.stage(id, "create_sprite", store.StageDone, 1500, "")
	f.stage(id, "runtime_start", store.StageStarted, 0, "")
	f.startTurn(id, 1)
	f.output(id, 1, "stdout", "hello\n")
	f.output(id, 1, "stdout", "world\n")
	f.finishTurn(id, 1, code(0))
	f.prompt(id)
	f.startTurn(id, 2)
	f.stage(id, "runtime_start", store.StageStarted, 0, "")
	f.output(id, 2, "stdout", "second turn\n")
	f.output(id, 2, "stderr", "a warning\n")
	f.finishTurn(id, 2, code(0))
	return id
}

func TestHeadersExact(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	st := testkit.Connect(t, t.Context(), streamURL(srv, f.finishedSession()), nil)
	resp := st.Response
	st.Rest(t)

	is.Equal(resp.StatusCode, http.StatusOK)                                    // streams are 200
	is.Equal(resp.Header.Values("Content-Type"), []string{"text/event-stream"}) // exact, no charset
	is.Equal(resp.Header.Values("Cache-Control"), []string{"no-cache"})         // proxies must not cache
	is.Equal(resp.Header.Values("X-Accel-Buffering"), []string{"no"})           // nginx must not buffer
}

func TestStartIsFirstWithPythonSpacing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.finishedSession()
	resp, err := http.Get(streamURL(srv, id))
	is.NoErr(err) // request succeeds
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	is.NoErr(err) // the server closes the finished stream

	first, _, _ := strings.Cut(string(body), "\n\n")
	is.Equal(first, `data: {"type": "start", "runtime": "shell", "provider": "local", "session_id": "`+id+`"}`) // start first, no id: line
	is.True(strings.Contains(first, `"type": "start"`))                                                         // the unit tests grep for this text
}

func TestReplayFinishedSession(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, returned := f.serve(sse.Config{})
	st := testkit.Connect(t, t.Context(), streamURL(srv, f.finishedSession()), nil)
	got := st.Rest(t)

	want := []string{"start", "stage", "stage", "stage", "turn_start", "output", "output", "stage", "turn_start", "output", "output", "exit"}
	is.Equal(testkit.Types(got), want) // every row once, derived events in place

	is.Equal(got[2].Event().State, "done")            // second stage row is the done
	is.Equal(*got[2].Event().DurationMS, int64(1500)) // done carries its duration
	is.Equal(got[1].Event().DurationMS, nil)          // started has no duration

	for _, i := range []int{4, 8} {
		ts, out := got[i], got[i+1]
		is.Equal(ts.ID, "")                           // turn_start has no id: line, so resuming from it keeps the output
		is.Equal(*ts.Event().ID, *out.Event().ID)     // turn_start shares the id of the output it precedes
		is.Equal(*ts.Event().Turn, *out.Event().Turn) // and names its turn
	}
	is.Equal(*got[4].Event().Turn, 1) // first turn
	is.Equal(*got[8].Event().Turn, 2) // second turn

	for _, fr := range got[1:] {
		if fr.Event().Type != "turn_start" {
			is.Equal(fr.ID, fmt.Sprint(*fr.Event().ID)) // id: line equals the JSON id
		}
	}
	exit := got[len(got)-1]
	is.Equal(*exit.Event().ID, int64(8))       // terminal id repeats the last row id
	is.Equal(*exit.Event().Code, 0)            // the session's exit code
	is.Equal(got[10].Event().Stream, "stderr") // stderr rows keep their stream

	select {
	case err := <-returned:
		is.NoErr(err) // a normal end is not an error
	case <-time.After(patience):
		t.Fatal("Stream did not return")
	}
}

func TestResumeFromCursor(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.finishedSession()

	tests := []struct {
		name   string
		query  string
		header map[string]string
		after  int64
		types  []string
	}{
		{"header", "", map[string]string{"Last-Event-ID": "4"}, 4,
			[]string{"start", "turn_start", "output", "stage", "turn_start", "output", "output", "exit"}},
		{"since", "?since=4", nil, 4,
			[]string{"start", "turn_start", "output", "stage", "turn_start", "output", "output", "exit"}},
		{"header wins over since", "?since=0", map[string]string{"Last-Event-ID": "7"}, 7,
			[]string{"start", "turn_start", "output", "exit"}},
		{"after the end", "", map[string]string{"Last-Event-ID": "8"}, 8,
			[]string{"start", "exit"}},
		{"negative clamps to a full replay", "?since=-5", nil, 0,
			[]string{"start", "stage", "stage", "stage", "turn_start", "output", "output", "stage", "turn_start", "output", "output", "exit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			st := testkit.Connect(t, t.Context(), streamURL(srv, id)+tt.query, tt.header)
			got := st.Rest(t)
			is.Equal(testkit.Types(got), tt.types) // only what follows the cursor, resumed output led by turn_start
			for _, fr := range got[1 : len(got)-1] {
				is.True(*fr.Event().ID > tt.after) // nothing at or before the cursor
			}
			exit := got[len(got)-1].Event()
			is.Equal(*exit.ID, int64(8)) // the terminal id is the last row id (or the cursor when nothing followed)
		})
	}
}

func TestParseCursor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		query  string
		header string
		want   int64
		bad    bool
	}{
		{"absent", "", "", 0, false},
		{"since", "?since=12", "", 12, false},
		{"header", "", "9", 9, false},
		{"header wins", "?since=12", "9", 9, false},
		{"header wins even over a bad since", "?since=x", "9", 9, false},
		{"negative since clamps", "?since=-3", "", 0, false},
		{"negative header clamps", "", "-3", 0, false},
		{"python int tolerates space and plus", "?since=%2B42%20", "", 42, false},
		{"non-integer since", "?since=abc", "", 0, true},
		{"empty since", "?since=", "", 0, true},
		{"fractional since", "?since=1.5", "", 0, true},
		{"non-integer header", "?since=3", "abc", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r := httptest.NewRequest(http.MethodGet, "/sessions/x/stream"+tt.query, nil)
			if tt.header != "" {
				r.Header.Set("Last-Event-ID", tt.header)
			}
			got, err := sse.ParseCursor(r)
			if tt.bad {
				is.True(errors.Is(err, sse.ErrBadCursor))         // the server maps this to 400
				is.Equal(err.Error(), "since must be an integer") // the contract's detail text
				return
			}
			is.NoErr(err)          // a valid cursor
			is.Equal(got, tt.want) // parsed, header first, clamped
		})
	}
}

func TestLiveTail(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
	is.Equal(st.Next(t).Event().Type, "start") // the stream is open before any output exists

	out := f.output(id, 1, "stdout", "live\n")
	ts := st.NextEvent(t)
	is.Equal(ts.Event().Type, "turn_start") // the first output of the turn is announced
	got := st.NextEvent(t)
	is.Equal(got.Event().Type, "output") // a row appended after connecting arrives
	is.Equal(got.Event().Data, "live\n") // with its bytes
	is.Equal(*got.Event().ID, out)       // and its row id

	f.finishTurn(id, 1, code(0))
	exit := st.NextEvent(t)
	is.Equal(exit.Event().Type, "exit") // the turn's end ends the stream
	is.Equal(*exit.Event().ID, out)     // with the last row id
	is.Equal(len(st.Rest(t)), 0)        // and the server closes it
}

func TestHeartbeatIsAComment(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{Heartbeat: 50 * time.Millisecond})
	id := f.session()
	f.startTurn(id, 1)
	st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
	for {
		fr := st.Next(t)
		for _, line := range strings.Split(fr.Raw, "\n") {
			is.True(strings.TrimSpace(strings.TrimPrefix(line, "data:")) != "") // the idle signal is never an empty data: line
		}
		if !fr.HasData {
			is.Equal(fr.Raw, ": heartbeat") // a comment clients skip
			return
		}
	}
}

func TestStaleEndsARunningStream(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, returned := f.serve(sse.Config{Heartbeat: 50 * time.Millisecond, Stale: 200 * time.Millisecond})
	id := f.session()
	f.startTurn(id, 1)
	out := f.output(id, 1, "stdout", "thinking\n")
	st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)

	var evs []testkit.Frame
	for _, fr := range st.Rest(t) {
		if fr.HasData {
			evs = append(evs, fr)
		}
	}
	is.Equal(testkit.Types(evs), []string{"start", "turn_start", "output", "stale"}) // quiet too long: stale, then close
	stale := evs[3]
	is.Equal(*stale.Event().ID, out)                      // stale carries the last row id
	is.Equal(stale.ID, fmt.Sprint(out))                   // and its id: line
	is.Equal(stale.Event().Message, "No output for 0.2s") // naming the configured interval
	is.NoErr(<-returned)                                  // a stale end is not an error

	s, err := f.db.GetSession(context.Background(), "", id)
	is.NoErr(err)                           // session still there
	is.Equal(s.Status, store.StatusRunning) // stale says nothing about the session itself
}

func TestTerminalEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		end     func(f *fixture, id string)
		rows    bool
		want    string
		code    *int
		message string
	}{
		{"completed", func(f *fixture, id string) { f.finishTurn(id, 1, code(0)) }, true, "exit", ptr(0), ""},
		{"failed with an exit code", func(f *fixture, id string) { f.finishTurn(id, 1, code(3)) }, true, "exit", ptr(3), ""},
		{"failed without a reason", func(f *fixture, id string) { f.must(f.db.FailSession(context.Background(), id, "")) }, true,
			"error", nil, "Session failed"},
		{"failed with a reason", func(f *fixture, id string) {
			f.finishTurn(id, 1, store.TurnResult{Error: "turn timed out after 10s"})
		}, true, "error", nil, "Session failed: turn timed out after 10s"},
		{"terminated", func(f *fixture, id string) {
			_, err := f.db.TerminateSession(context.Background(), f.userID, id)
			f.must(err)
		}, true, "terminated", nil, "Session terminated"},
		{"no rows at all", func(f *fixture, id string) { f.finishTurn(id, 1, code(0)) }, false, "exit", ptr(0), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			f := newFixture(t)
			srv, _ := f.serve(sse.Config{})
			id := f.session()
			f.startTurn(id, 1)
			var last int64
			if tt.rows {
				last = f.output(id, 1, "stdout", "x")
			}
			tt.end(f, id)
			st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
			got := st.Rest(t)
			end := got[len(got)-1]
			is.Equal(end.Event().Type, tt.want)       // the terminal event follows the session state
			is.Equal(*end.Event().ID, last)           // with the last row id
			is.Equal(end.Event().Code, tt.code)       // exit code, when there is one
			is.Equal(end.Event().Message, tt.message) // the message clients show
			if last == 0 {
				is.Equal(end.ID, "") // id 0 gets no id: line
			} else {
				is.Equal(end.ID, fmt.Sprint(last)) // the id: line repeats it
			}
		})
	}
}

func ptr(n int) *int { return &n }

func TestFailedStageMessage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.stage(id, "create_sprite", store.StageStarted, 0, "")
	f.stage(id, "create_sprite", store.StageFailed, 20, "Failed to create Sprite: no space")
	f.must(f.db.FailSession(context.Background(), id, "provisioning failed"))
	st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
	got := st.Rest(t)
	is.Equal(testkit.Types(got), []string{"start", "stage", "stage", "error"})                                                                                          // no turn output, straight to the error
	is.Equal(got[2].Text, `{"type": "stage", "id": 2, "stage": "create_sprite", "state": "failed", "duration_ms": 20, "message": "Failed to create Sprite: no space"}`) // key order and spacing as the contract lists them
	is.Equal(got[3].Event().Message, "Session failed: provisioning failed")                                                                                             // the recorded reason
}

func TestNonASCIIIsEscapedAndRoundTrips(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	data := "h\u00e9llo \u4e16\u754c \U0001F389 \"q\" back\\slash\ttab nul\x00 del\x7f cr\r\n"
	f.output(id, 1, "stdout", data)
	f.finishTurn(id, 1, code(0))
	st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
	got := st.Rest(t)
	out := got[2]
	is.Equal(out.Event().Type, "output") // the row
	// What Python's json.dumps (ensure_ascii) writes for the same string.
	is.Equal(out.Text, `{"type": "output", "id": 1, "stream": "stdout", "data": "h\u00e9llo \u4e16\u754c \ud83c\udf89 \"q\" back\\slash\ttab nul\u0000 del\u007f cr\r\n", "turn": 1}`) // byte for byte
	is.Equal(out.Event().Data, data)                                                                                                                                                   // a JSON client gets the stored string back
}

func TestMultiTurnStreamWaitsForTheNextTurn(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	one := f.output(id, 1, "stdout", "one\n")
	f.finishTurn(id, 1, code(0))
	f.prompt(id)

	st := testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
	is.Equal(st.NextEvent(t).Event().Type, "start") // start
	is.Equal(*st.NextEvent(t).Event().Turn, 1)      // turn_start 1
	is.Equal(*st.NextEvent(t).Event().ID, one)      // turn 1's output replayed

	f.startTurn(id, 2)
	two := f.output(id, 2, "stdout", "two\n")
	ts := st.NextEvent(t)
	is.Equal(ts.Event().Type, "turn_start")    // no exit at turn 1's end: the stream carried on
	is.Equal(*ts.Event().Turn, 2)              // into turn 2
	is.Equal(*st.NextEvent(t).Event().ID, two) // turn 2's output

	f.finishTurn(id, 2, code(0))
	exit := st.NextEvent(t)
	is.Equal(exit.Event().Type, "exit") // one terminal event, after the last turn
	is.Equal(*exit.Event().ID, two)     // carrying the last row id
	is.Equal(len(st.Rest(t)), 0)        // then the stream closes
}

func TestClientDisconnectEndsStream(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, returned := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	ctx, cancel := context.WithCancel(t.Context())
	st := testkit.Connect(t, ctx, streamURL(srv, id), nil)
	is.Equal(st.Next(t).Event().Type, "start") // streaming
	is.NoErr(<-returned)                       // the handler is done: the stream goes on without it
	open, _ := f.hub.Open("")
	is.Equal(open, 1) // one stream open
	cancel()
	gone := testkit.Eventually(patience, func() bool { n, _ := f.hub.Open(""); return n == 0 })
	is.True(gone) // the stream ends when the client leaves, though the session is quiet
}

func TestMissingSessionWritesNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	rec := httptest.NewRecorder()
	err := sse.NewHub(f.db, sse.Config{}).Stream(rec, httptest.NewRequest("GET", "/", nil), "alice", "00000000-0000-0000-0000-000000000000", 0)
	is.Equal(store.ErrorCode(err), store.NotFound) // the caller can still answer 404 JSON
	is.Equal(rec.Body.Len(), 0)                    // nothing streamed
	is.Equal(rec.Header().Get("Content-Type"), "") // no stream headers either
}

func TestWriterThatCannotFlushIsAnError(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	id := f.session()
	// A wrapper that hides http.Flusher (and has no Unwrap), as a careless
	// middleware would.
	w := struct{ http.ResponseWriter }{httptest.NewRecorder()}
	err := sse.NewHub(f.db, sse.Config{}).Stream(w, httptest.NewRequest("GET", "/", nil), "alice", id, 0)
	is.True(errors.Is(err, http.ErrNotSupported)) // live output would be held back: say so instead of ending quietly
}

// Golden transcripts pin the exact bytes of whole streams. Ids are
// deterministic in a fresh store; only the session id varies.
func TestGoldenTranscripts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		build func(f *fixture) string
	}{
		{"replay_finished", (*fixture).finishedSession},
		{"failed_with_reason", func(f *fixture) string {
			id := f.session()
			f.stage(id, "create_sprite", store.StageStarted, 0, "")
			f.stage(id, "create_sprite", store.StageDone, 800, "")
			f.startTurn(id, 1)
			f.output(id, 1, "stdout", "working...\n")
			f.finishTurn(id, 1, store.TurnResult{Error: "turn timed out after 10s"})
			return id
		}},
		{"provision_failed", func(f *fixture) string {
			// As the runner records it: the failed stage, the original's
			// stderr row in turn 1, then the session fails (no exit code).
			id := f.session()
			f.stage(id, "provision_setup", store.StageStarted, 0, "")
			f.stage(id, "provision_setup", store.StageFailed, 40, "Provisioning script failed: exit 4\nstderr:\nno luck\n")
			f.output(id, 1, "stderr", "provision failed: Provisioning script failed: exit 4\nstderr:\nno luck\n\n")
			f.must(f.db.FailSession(context.Background(), id, "Provisioning script failed: exit 4\nstderr:\nno luck\n"))
			return id
		}},
		{"terminated", func(f *fixture) string {
			id := f.session()
			f.stage(id, "create_sprite", store.StageStarted, 0, "")
			f.stage(id, "create_sprite", store.StageDone, 800, "")
			f.startTurn(id, 1)
			f.output(id, 1, "stdout", "partial")
			_, err := f.db.TerminateSession(context.Background(), f.userID, id)
			f.must(err)
			return id
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			f := newFixture(t)
			srv, _ := f.serve(sse.Config{})
			id := tt.build(f)
			resp, err := http.Get(streamURL(srv, id))
			is.NoErr(err) // request succeeds
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			is.NoErr(err) // the stream ends on its own
			got := strings.ReplaceAll(string(body), id, "SESSION_ID")

			testkit.Golden(t, filepath.Join("..", "testdata", "sse", tt.name+".txt"), []byte(got)) // the transcript, byte for byte
		})
	}
}

// discard is the cheapest ResponseWriter that still flushes, so the
// benchmark measures reading and encoding, not buffering.
type discard struct {
	h http.Header
	n int64
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { d.n += int64(len(p)); return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

func BenchmarkReplay100k(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	u, err := db.EnsureUser(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	a, err := db.CreateAgent(ctx, u.ID, store.AgentInput{Name: "sh",
		Model: store.Model{Runtime: "shell", Provider: "local", Model: "local/shell"}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := db.CreateSession(ctx, u.ID, store.SessionInput{AgentID: a.ID, Prompt: "yes", Timeout: 600})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.StartTurn(ctx, s.ID, 1); err != nil {
		b.Fatal(err)
	}
	const total, batch = 100_000, 1000
	chunk := strings.Repeat("y\n", 40) // an 80-byte output chunk
	for i := 0; i < total; i += batch {
		evs := make([]store.Event, batch)
		for j := range evs {
			evs[j] = store.Event{Kind: store.KindOutput, Turn: 1, Stream: "stdout", Data: chunk}
		}
		if err := db.AppendEvents(ctx, s.ID, evs); err != nil {
			b.Fatal(err)
		}
	}
	zero := 0
	if err := db.FinishTurn(ctx, s.ID, 1, store.TurnResult{ExitCode: &zero}); err != nil {
		b.Fatal(err)
	}

	var bytes int64
	b.ResetTimer()
	for b.Loop() {
		w := &discard{h: http.Header{}}
		if err := sse.NewHub(db, sse.Config{}).Stream(w, httptest.NewRequest("GET", "/", nil), "alice", s.ID, 0); err != nil {
			b.Fatal(err)
		}
		bytes = w.n
	}
	b.SetBytes(bytes)
	b.ReportMetric(total, "events/op")
}
