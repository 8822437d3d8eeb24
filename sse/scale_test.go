package sse_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
)

// countingLog is the store with its reads counted.
type countingLog struct {
	*store.DB
	batches, states atomic.Int64
}

func (c *countingLog) EventBatch(ctx context.Context, id string, after int64, rows, bytes int) ([]store.Event, bool, error) {
	c.batches.Add(1)
	return c.DB.EventBatch(ctx, id, after, rows, bytes)
}

func (c *countingLog) SessionState(ctx context.Context, id string) (*store.Session, error) {
	c.states.Add(1)
	return c.DB.SessionState(ctx, id)
}

// hubServer serves hub's streams of alice's sessions, with the server's
// connections' send buffers made small when sndbuf > 0 (so a client that
// stops reading blocks the server's writes quickly).
func (f *fixture) hubServer(hub *sse.Hub, sndbuf int) (*httptest.Server, <-chan error) {
	returned := make(chan error, 64)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sessions/{id}/stream", func(w http.ResponseWriter, r *http.Request) {
		cursor, err := sse.ParseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		err = hub.Stream(w, r, "alice", r.PathValue("id"), cursor)
		if e := store.AsError(err); e != nil {
			store.SetRetryAfter(w.Header(), err)
			http.Error(w, e.Message, store.HTTPStatus(err))
		}
		returned <- err
	})
	srv := httptest.NewUnstartedServer(mux)
	if sndbuf > 0 {
		srv.Listener = smallSendBuffers{srv.Listener, sndbuf}
	}
	srv.Start()
	f.t.Cleanup(srv.Close)
	return srv, returned
}

// watched is what a watcher read of a stream: its output, in order, and
// the event types it saw.
type watched struct {
	out   string
	ids   []int64
	types []string
	err   error
}

// watch reads the stream at url in the background until the server closes
// it (or ctx ends), so a test can act meanwhile; the stream is read all
// along, as a healthy client does.
func watch(ctx context.Context, url string, header map[string]string) <-chan watched {
	res := make(chan watched, 1)
	go func() {
		var w watched
		defer func() { res <- w }()
		req, err := testkit.Get(ctx, url, header)
		if err != nil {
			w.err = err
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.err = err
			return
		}
		defer resp.Body.Close()
		r := testkit.NewReader(resp.Body)
		var out strings.Builder
		for {
			fr, err := r.NextEvent()
			if err != nil {
				w.out = out.String()
				return
			}
			e := fr.Event()
			w.types = append(w.types, e.Type)
			if e.Type == "output" {
				out.WriteString(e.Data)
				w.ids = append(w.ids, *e.ID)
			}
		}
	}()
	return res
}

type smallSendBuffers struct {
	net.Listener
	size int
}

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// Watchers of one session share its tail: each change costs about one
// read of the log, not one per watcher, and every watcher gets every row
// once, in order.
func TestWatchersShareOneReadPerChange(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	log := &countingLog{DB: f.db}
	srv, _ := f.hubServer(sse.NewHub(log, sse.Config{}), 0)
	id := f.session()
	f.startTurn(id, 1)
	const watchers, changes = 40, 25
	streams := make([]*testkit.Stream, watchers)
	for i := range streams {
		streams[i] = testkit.Connect(t, t.Context(), streamURL(srv, id), nil)
		is.Equal(streams[i].Next(t).Event().Type, "start") // connected
	}
	before := log.batches.Load()
	var want strings.Builder
	for i := range changes {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		f.output(id, 1, "stdout", line)
		time.Sleep(5 * time.Millisecond) // a change at a time, as a running command writes
	}
	f.finishTurn(id, 1, code(0))
	var wg sync.WaitGroup
	got := make([]string, watchers)
	for i, st := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			for _, fr := range st.Rest(t) {
				if fr.Event().Type == "output" {
					b.WriteString(fr.Event().Data)
				}
			}
			got[i] = b.String()
		}()
	}
	wg.Wait()
	for _, g := range got {
		is.Equal(g, want.String()) // every watcher got every row once, in order
	}
	reads := log.batches.Load() - before
	t.Logf("%d watchers, %d changes: %d reads of the log", watchers, changes, reads)
	is.True(reads <= 3*changes) // about one read per change, where each watcher reading would be watchers×changes
}

// A flood of output larger than a tail keeps still reaches every watcher
// whole and in order: a watcher that falls behind reads the store.
func TestFloodLargerThanTheTail(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.hubServer(sse.NewHub(f.db, sse.Config{}), 0)
	id := f.session()
	f.startTurn(id, 1)
	f.output(id, 1, "stdout", "first\n")
	last := f.output(id, 1, "stdout", "second\n")
	header := map[string]string{"Last-Event-ID": fmt.Sprint(last)}
	a, b := watch(t.Context(), streamURL(srv, id), header), watch(t.Context(), streamURL(srv, id), header)
	time.Sleep(100 * time.Millisecond) // both connected (a late one replays: the same rows)
	chunk := strings.Repeat("x", 32<<10-1) + "\n"
	var want strings.Builder
	for range 12 { // 12 appends of 8 chunks: 3 MiB
		evs := make([]store.Event, 8)
		for i := range evs {
			evs[i] = store.Event{Kind: store.KindOutput, Turn: 1, Stream: "stdout", Data: chunk}
			want.WriteString(chunk)
		}
		f.must(f.db.AppendEvents(t.Context(), id, evs))
	}
	f.finishTurn(id, 1, code(0))
	for _, ch := range []<-chan watched{a, b} {
		var w watched
		select {
		case w = <-ch:
		case <-time.After(2 * time.Minute):
			t.Fatal("a watcher's stream did not end")
		}
		is.NoErr(w.err)
		is.Equal(len(w.out), want.Len())                         // every row
		is.True(w.out == want.String())                          // in order
		is.True(slices.IsSorted(w.ids) && !hasDuplicates(w.ids)) // once each
		is.Equal(w.types[len(w.types)-1], "exit")                // then the end
	}
}

func hasDuplicates(ids []int64) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return true
		}
	}
	return false
}

// A client that stops reading is cut off once a write has waited the write
// timeout, without harm to anyone else, and resumes from its last event id
// with nothing lost and nothing twice.
func TestStalledReaderIsCutAndResumes(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	hub := sse.NewHub(f.db, sse.Config{WriteTimeout: 2 * time.Second})
	srv, _ := f.hubServer(hub, 8<<10)
	id := f.session()
	f.startTurn(id, 1)

	// The stalled client: a small receive buffer, reads the start frame and
	// a little more, then nothing.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	conn, err := d.DialContext(t.Context(), "tcp", srv.Listener.Addr().String())
	is.NoErr(err)
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sessions/%s/stream HTTP/1.1\r\nHost: test\r\n\r\n", id)
	br := bufio.NewReaderSize(conn, 4096)
	res, err := http.ReadResponse(br, nil)
	is.NoErr(err)
	is.Equal(res.StatusCode, http.StatusOK)                // streaming
	healthy := watch(t.Context(), streamURL(srv, id), nil) // a second watcher, reading all along
	both := testkit.Eventually(patience, func() bool { n, _ := hub.Open(""); return n == 2 })
	is.True(both) // both streams open

	var want strings.Builder
	for i := range 200 { // ~2.5 MiB: far more than the two buffers hold
		line := fmt.Sprintf("%04d %s\n", i, strings.Repeat("y", 12<<10))
		want.WriteString(line)
		f.output(id, 1, "stdout", line)
	}
	cut := testkit.Eventually(10*time.Second, func() bool { n, _ := hub.Open(""); return n == 1 })
	is.True(cut) // the stalled stream was cut off, the healthy one goes on
	// What the stalled client got before the cut: its last whole event.
	frames := testkit.NewReader(res.Body)
	var got strings.Builder
	var lastID int64
	for {
		fr, err := frames.NextEvent()
		if err != nil {
			break
		}
		if e := fr.Event(); e.Type == "output" {
			got.WriteString(e.Data)
			lastID = *e.ID
		}
	}
	is.True(got.Len() < want.Len()) // it was cut off part way
	f.finishTurn(id, 1, code(0))

	// It resumes from its last event id: the rest, nothing twice.
	again := testkit.Connect(t, t.Context(), streamURL(srv, id), map[string]string{"Last-Event-ID": fmt.Sprint(lastID)})
	for _, fr := range again.Rest(t) {
		if e := fr.Event(); e.Type == "output" {
			got.WriteString(e.Data)
		}
	}
	if got.String() != want.String() {
		g, w := got.String(), want.String()
		i := 0
		for i < min(len(g), len(w)) && g[i] == w[i] {
			i++
		}
		t.Logf("cut after id %d; got %d bytes, want %d; first difference at %d: got %.40q, want %.40q", lastID, len(g), len(w), i, g[i:], w[i:])
	}
	is.True(got.String() == want.String()) // lossless across the cut (see the logs)
	select {
	case w := <-healthy:
		is.NoErr(w.err)
		is.True(w.out == want.String()) // the healthy watcher got everything, uncut
	case <-time.After(time.Minute):
		t.Fatal("the healthy watcher's stream did not end")
	}
}

// Open streams are counted per user and in all; over a limit a stream is
// refused before anything is written, and closing one makes room.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	hub := sse.NewHub(f.db, sse.Config{MaxPerUser: 2, MaxTotal: 3})
	id := f.session()
	f.startTurn(id, 1)
	open := func(user string) (closeIt func(), err error) {
		ctx, cancel := context.WithCancel(t.Context())
		started := make(chan error, 1)
		w := &notifyingWriter{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan struct{})}
		go func() { started <- hub.Stream(w, httptest.NewRequest("GET", "/", nil).WithContext(ctx), user, id, 0) }()
		select {
		case err := <-started:
			cancel()
			return nil, err
		case <-w.wrote:
			return func() { cancel(); <-started }, nil
		case <-time.After(patience):
			t.Fatal("the stream neither started nor was refused")
		}
		return nil, nil
	}
	a1, err := open("alice")
	is.NoErr(err)
	a2, err := open("alice")
	is.NoErr(err) // two of alice's
	_, err = open("alice")
	e := store.AsError(err)
	is.True(e != nil)                           // a third is refused
	is.Equal(store.HTTPStatus(err), 429)        // as a per-user limit
	is.Equal(e.Extra["limit"], 2)               // with the limit
	is.Equal(e.Extra["active"], 2)              // and what is open
	is.True(strings.Contains(e.Message, "2/2")) // in words too
	b1, err := open("bob")
	is.NoErr(err) // bob has his own count
	_, err = open("carol")
	is.Equal(store.HTTPStatus(err), 503)              // the server is at its cap
	is.Equal(store.AsError(err).RetryAfter > 0, true) // and says when to retry
	total, mine := hub.Open("alice")
	is.Equal(total, 3)
	is.Equal(mine, 2)
	a1()
	c1, err := open("carol")
	is.NoErr(err) // a stream closing makes room
	a2()
	b1()
	c1()
	total, _ = hub.Open("alice")
	is.Equal(total, 0) // every stream let go
}

// notifyingWriter says when the stream first wrote.
type notifyingWriter struct {
	*httptest.ResponseRecorder
	mu    sync.Mutex
	wrote chan struct{}
}

func (w *notifyingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.wrote:
	default:
		close(w.wrote)
	}
	return len(p), nil
}

func (w *notifyingWriter) Flush() {}

// An HTTP/1.0 client gets the stream delimited by the connection's close
// (no chunked encoding, which it would not understand).
func TestHTTP10StreamEndsWithTheConnection(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f := newFixture(t)
	srv, _ := f.hubServer(sse.NewHub(f.db, sse.Config{}), 0)
	id := f.finishedSession()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	is.NoErr(err)
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sessions/%s/stream HTTP/1.0\r\n\r\n", id)
	conn.SetReadDeadline(time.Now().Add(patience))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	is.NoErr(err)
	is.Equal(res.StatusCode, http.StatusOK)                       // streaming
	is.Equal(len(res.TransferEncoding), 0)                        // not chunked
	is.Equal(res.Header.Get("Content-Type"), "text/event-stream") // an event stream
	body, err := io.ReadAll(res.Body)
	is.NoErr(err) // to the close
	frames := testkit.Parse(body)
	is.Equal(frames[0].Type(), "start")            // from the start
	is.Equal(frames[len(frames)-1].Type(), "exit") // to the end
}
