package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// patience bounds every wait for the stream; it is a deadlock guard, not a
// latency assertion.
const patience = 5 * time.Second

// fixture is a fresh store with one user and one shell agent.
type fixture struct {
	t       *testing.T
	db      *store.DB
	userID  string
	agentID string
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions/{id}/stream", func(w http.ResponseWriter, r *http.Request) {
		cursor, err := sse.ParseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		returned <- sse.Stream(r.Context(), w, f.db, r.PathValue("id"), cursor, cfg)
	})
	srv := httptest.NewServer(mux)
	f.t.Cleanup(srv.Close)
	return srv, returned
}

// event is a decoded data: payload.
type event struct {
	Type       string `json:"type"`
	ID         *int64 `json:"id"`
	Turn       *int   `json:"turn"`
	Stream     string `json:"stream"`
	Data       string `json:"data"`
	Stage      string `json:"stage"`
	State      string `json:"state"`
	DurationMS *int64 `json:"duration_ms"`
	Message    string `json:"message"`
	Code       *int   `json:"code"`
	Runtime    string `json:"runtime"`
	Provider   string `json:"provider"`
	SessionID  string `json:"session_id"`
}

// frame is one blank-line-terminated block of the stream.
type frame struct {
	raw    string // the block's lines, joined by \n
	idLine string // value of the "id: " line, "" without one
	data   string // JSON after "data: ", "" for a comment
	ev     event
	err    error
}

func parseFrame(lines []string) frame {
	fr := frame{raw: strings.Join(lines, "\n")}
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "id: "):
			fr.idLine = strings.TrimPrefix(l, "id: ")
		case strings.HasPrefix(l, "data: "):
			fr.data = strings.TrimPrefix(l, "data: ")
			fr.err = json.Unmarshal([]byte(fr.data), &fr.ev)
		}
	}
	return fr
}

// connect opens the stream with optional headers and delivers its frames on
// a channel that closes when the server ends the response.
func connect(t *testing.T, ctx context.Context, url string, header map[string]string) (*http.Response, <-chan frame) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); resp.Body.Close() })
	frames := make(chan frame)
	go func() {
		defer close(frames)
		br := bufio.NewReader(resp.Body)
		var lines []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line != "" {
				lines = append(lines, line)
				continue
			}
			select {
			case frames <- parseFrame(lines):
			case <-done:
				return
			}
			lines = nil
		}
	}()
	return resp, frames
}

// next returns the stream's next frame, failing if it closes or stalls.
func next(t *testing.T, frames <-chan frame) frame {
	t.Helper()
	select {
	case fr, ok := <-frames:
		if !ok {
			t.Fatal("stream closed early")
		}
		if fr.err != nil {
			t.Fatalf("bad JSON in %q: %v", fr.raw, fr.err)
		}
		return fr
	case <-time.After(patience):
		t.Fatal("no frame within the deadline")
	}
	panic("unreachable")
}

// nextEvent skips heartbeat comments.
func nextEvent(t *testing.T, frames <-chan frame) frame {
	t.Helper()
	for {
		if fr := next(t, frames); fr.data != "" {
			return fr
		}
	}
}

// rest reads frames until the server closes the stream.
func rest(t *testing.T, frames <-chan frame) []frame {
	t.Helper()
	var out []frame
	deadline := time.After(patience)
	for {
		select {
		case fr, ok := <-frames:
			if !ok {
				return out
			}
			if fr.err != nil {
				t.Fatalf("bad JSON in %q: %v", fr.raw, fr.err)
			}
			out = append(out, fr)
		case <-deadline:
			t.Fatal("stream did not close within the deadline")
		}
	}
}

func types(frames []frame) []string {
	var out []string
	for _, fr := range frames {
		out = append(out, fr.ev.Type)
	}
	return out
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
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	resp, frames := connect(t, t.Context(), streamURL(srv, f.finishedSession()), nil)
	rest(t, frames)

	is.Equal(resp.StatusCode, http.StatusOK)                                    // streams are 200
	is.Equal(resp.Header.Values("Content-Type"), []string{"text/event-stream"}) // exact, no charset
	is.Equal(resp.Header.Values("Cache-Control"), []string{"no-cache"})         // proxies must not cache
	is.Equal(resp.Header.Values("X-Accel-Buffering"), []string{"no"})           // nginx must not buffer
}

func TestStartIsFirstWithPythonSpacing(t *testing.T) {
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
	is := is.New(t)
	f := newFixture(t)
	srv, returned := f.serve(sse.Config{})
	_, frames := connect(t, t.Context(), streamURL(srv, f.finishedSession()), nil)
	got := rest(t, frames)

	want := []string{"start", "stage", "stage", "stage", "turn_start", "output", "output", "stage", "turn_start", "output", "output", "exit"}
	is.Equal(types(got), want) // every row once, derived events in place

	is.Equal(got[2].ev.State, "done")            // second stage row is the done
	is.Equal(*got[2].ev.DurationMS, int64(1500)) // done carries its duration
	is.Equal(got[1].ev.DurationMS, nil)          // started has no duration

	for _, i := range []int{4, 8} {
		ts, out := got[i], got[i+1]
		is.Equal(ts.idLine, "")             // turn_start has no id: line, so resuming from it keeps the output
		is.Equal(*ts.ev.ID, *out.ev.ID)     // turn_start shares the id of the output it precedes
		is.Equal(*ts.ev.Turn, *out.ev.Turn) // and names its turn
	}
	is.Equal(*got[4].ev.Turn, 1) // first turn
	is.Equal(*got[8].ev.Turn, 2) // second turn

	for _, fr := range got[1:] {
		if fr.ev.Type != "turn_start" {
			is.Equal(fr.idLine, fmt.Sprint(*fr.ev.ID)) // id: line equals the JSON id
		}
	}
	exit := got[len(got)-1]
	is.Equal(*exit.ev.ID, int64(8))       // terminal id repeats the last row id
	is.Equal(*exit.ev.Code, 0)            // the session's exit code
	is.Equal(got[10].ev.Stream, "stderr") // stderr rows keep their stream

	select {
	case err := <-returned:
		is.NoErr(err) // a normal end is not an error
	case <-time.After(patience):
		t.Fatal("Stream did not return")
	}
}

func TestResumeFromCursor(t *testing.T) {
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
			_, frames := connect(t, t.Context(), streamURL(srv, id)+tt.query, tt.header)
			got := rest(t, frames)
			is.Equal(types(got), tt.types) // only what follows the cursor, resumed output led by turn_start
			for _, fr := range got[1 : len(got)-1] {
				is.True(*fr.ev.ID > tt.after) // nothing at or before the cursor
			}
			exit := got[len(got)-1].ev
			is.Equal(*exit.ID, int64(8)) // the terminal id is the last row id (or the cursor when nothing followed)
		})
	}
}

func TestParseCursor(t *testing.T) {
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
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	_, frames := connect(t, t.Context(), streamURL(srv, id), nil)
	is.Equal(next(t, frames).ev.Type, "start") // the stream is open before any output exists

	out := f.output(id, 1, "stdout", "live\n")
	ts := nextEvent(t, frames)
	is.Equal(ts.ev.Type, "turn_start") // the first output of the turn is announced
	got := nextEvent(t, frames)
	is.Equal(got.ev.Type, "output") // a row appended after connecting arrives
	is.Equal(got.ev.Data, "live\n") // with its bytes
	is.Equal(*got.ev.ID, out)       // and its row id

	f.finishTurn(id, 1, code(0))
	exit := nextEvent(t, frames)
	is.Equal(exit.ev.Type, "exit")    // the turn's end ends the stream
	is.Equal(*exit.ev.ID, out)        // with the last row id
	is.Equal(len(rest(t, frames)), 0) // and the server closes it
}

func TestHeartbeatIsAComment(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{Heartbeat: 50 * time.Millisecond})
	id := f.session()
	f.startTurn(id, 1)
	_, frames := connect(t, t.Context(), streamURL(srv, id), nil)
	for {
		fr := next(t, frames)
		for _, line := range strings.Split(fr.raw, "\n") {
			is.True(strings.TrimSpace(strings.TrimPrefix(line, "data:")) != "") // the idle signal is never an empty data: line
		}
		if fr.data == "" {
			is.Equal(fr.raw, ": heartbeat") // a comment clients skip
			return
		}
	}
}

func TestStaleEndsARunningStream(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	srv, returned := f.serve(sse.Config{Heartbeat: 50 * time.Millisecond, Stale: 200 * time.Millisecond})
	id := f.session()
	f.startTurn(id, 1)
	out := f.output(id, 1, "stdout", "thinking\n")
	_, frames := connect(t, t.Context(), streamURL(srv, id), nil)

	var evs []frame
	for _, fr := range rest(t, frames) {
		if fr.data != "" {
			evs = append(evs, fr)
		}
	}
	is.Equal(types(evs), []string{"start", "turn_start", "output", "stale"}) // quiet too long: stale, then close
	stale := evs[3]
	is.Equal(*stale.ev.ID, out)                      // stale carries the last row id
	is.Equal(stale.idLine, fmt.Sprint(out))          // and its id: line
	is.Equal(stale.ev.Message, "No output for 0.2s") // naming the configured interval
	is.NoErr(<-returned)                             // a stale end is not an error

	s, err := f.db.GetSession(context.Background(), "", id)
	is.NoErr(err)                           // session still there
	is.Equal(s.Status, store.StatusRunning) // stale says nothing about the session itself
}

func TestTerminalEvents(t *testing.T) {
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
			_, frames := connect(t, t.Context(), streamURL(srv, id), nil)
			got := rest(t, frames)
			end := got[len(got)-1]
			is.Equal(end.ev.Type, tt.want)       // the terminal event follows the session state
			is.Equal(*end.ev.ID, last)           // with the last row id
			is.Equal(end.ev.Code, tt.code)       // exit code, when there is one
			is.Equal(end.ev.Message, tt.message) // the message clients show
			if last == 0 {
				is.Equal(end.idLine, "") // id 0 gets no id: line
			} else {
				is.Equal(end.idLine, fmt.Sprint(last)) // the id: line repeats it
			}
		})
	}
}

func ptr(n int) *int { return &n }

func TestFailedStageMessage(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.stage(id, "create_sprite", store.StageStarted, 0, "")
	f.stage(id, "create_sprite", store.StageFailed, 20, "Failed to create Sprite: no space")
	f.must(f.db.FailSession(context.Background(), id, "provisioning failed"))
	_, frames := connect(t, t.Context(), streamURL(srv, id), nil)
	got := rest(t, frames)
	is.Equal(types(got), []string{"start", "stage", "stage", "error"})                                                                                                  // no turn output, straight to the error
	is.Equal(got[2].data, `{"type": "stage", "id": 2, "stage": "create_sprite", "state": "failed", "duration_ms": 20, "message": "Failed to create Sprite: no space"}`) // key order and spacing as the contract lists them
	is.Equal(got[3].ev.Message, "Session failed: provisioning failed")                                                                                                  // the recorded reason
}

func TestNonASCIIIsEscapedAndRoundTrips(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	data := "h\u00e9llo \u4e16\u754c \U0001F389 \"q\" back\\slash\ttab nul\x00 del\x7f cr\r\n"
	f.output(id, 1, "stdout", data)
	f.finishTurn(id, 1, code(0))
	_, frames := connect(t, t.Context(), streamURL(srv, id), nil)
	got := rest(t, frames)
	out := got[2]
	is.Equal(out.ev.Type, "output") // the row
	// What Python's json.dumps (ensure_ascii) writes for the same string.
	is.Equal(out.data, `{"type": "output", "id": 1, "stream": "stdout", "data": "h\u00e9llo \u4e16\u754c \ud83c\udf89 \"q\" back\\slash\ttab nul\u0000 del\u007f cr\r\n", "turn": 1}`) // byte for byte
	is.Equal(out.ev.Data, data)                                                                                                                                                        // a JSON client gets the stored string back
}

func TestMultiTurnStreamWaitsForTheNextTurn(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	one := f.output(id, 1, "stdout", "one\n")
	f.finishTurn(id, 1, code(0))
	f.prompt(id)

	_, frames := connect(t, t.Context(), streamURL(srv, id), nil)
	is.Equal(nextEvent(t, frames).ev.Type, "start") // start
	is.Equal(*nextEvent(t, frames).ev.Turn, 1)      // turn_start 1
	is.Equal(*nextEvent(t, frames).ev.ID, one)      // turn 1's output replayed

	f.startTurn(id, 2)
	two := f.output(id, 2, "stdout", "two\n")
	ts := nextEvent(t, frames)
	is.Equal(ts.ev.Type, "turn_start")         // no exit at turn 1's end: the stream carried on
	is.Equal(*ts.ev.Turn, 2)                   // into turn 2
	is.Equal(*nextEvent(t, frames).ev.ID, two) // turn 2's output

	f.finishTurn(id, 2, code(0))
	exit := nextEvent(t, frames)
	is.Equal(exit.ev.Type, "exit")    // one terminal event, after the last turn
	is.Equal(*exit.ev.ID, two)        // carrying the last row id
	is.Equal(len(rest(t, frames)), 0) // then the stream closes
}

func TestClientDisconnectEndsStream(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	srv, returned := f.serve(sse.Config{})
	id := f.session()
	f.startTurn(id, 1)
	ctx, cancel := context.WithCancel(t.Context())
	_, frames := connect(t, ctx, streamURL(srv, id), nil)
	is.Equal(next(t, frames).ev.Type, "start") // streaming
	cancel()
	select {
	case err := <-returned:
		is.NoErr(err) // a client going away is not an error
	case <-time.After(patience):
		t.Fatal("Stream kept running after the client left")
	}
}

func TestMissingSessionWritesNothing(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	rec := httptest.NewRecorder()
	err := sse.Stream(t.Context(), rec, f.db, "00000000-0000-0000-0000-000000000000", 0, sse.Config{})
	is.Equal(store.ErrorCode(err), store.NotFound) // the caller can still answer 404 JSON
	is.Equal(rec.Body.Len(), 0)                    // nothing streamed
	is.Equal(rec.Header().Get("Content-Type"), "") // no stream headers either
}

func TestWriterThatCannotFlushIsAnError(t *testing.T) {
	is := is.New(t)
	f := newFixture(t)
	id := f.session()
	// A wrapper that hides http.Flusher (and has no Unwrap), as a careless
	// middleware would.
	w := struct{ http.ResponseWriter }{httptest.NewRecorder()}
	err := sse.Stream(t.Context(), w, f.db, id, 0, sse.Config{})
	is.True(errors.Is(err, http.ErrNotSupported)) // live output would be held back: say so instead of ending quietly
}

// Golden transcripts pin the exact bytes of whole streams. Ids are
// deterministic in a fresh store; only the session id varies.
func TestGoldenTranscripts(t *testing.T) {
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

			path := filepath.Join("..", "testdata", "sse", tt.name+".txt")
			if *update {
				is.NoErr(os.MkdirAll(filepath.Dir(path), 0o755)) // golden dir
				is.NoErr(os.WriteFile(path, []byte(got), 0o644)) // rewrite golden
			}
			want, err := os.ReadFile(path)
			is.NoErr(err)               // golden exists (go test -run Golden -update writes it)
			is.Equal(got, string(want)) // the transcript, byte for byte
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
		if err := sse.Stream(ctx, w, db, s.ID, 0, sse.Config{}); err != nil {
			b.Fatal(err)
		}
		bytes = w.n
	}
	b.SetBytes(bytes)
	b.ReportMetric(total, "events/op")
}
