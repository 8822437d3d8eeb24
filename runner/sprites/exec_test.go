package sprites

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/matryer/is"
)

// accept upgrades r, advertising caps when given.
func accept(t *testing.T, w http.ResponseWriter, r *http.Request, caps string) *websocket.Conn {
	t.Helper()
	if caps != "" {
		w.Header().Set("X-Sprite-Capabilities", caps)
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		t.Errorf("accept: %v", err)
		return nil
	}
	conn.SetReadLimit(-1)
	return conn
}

func sendInfo(ctx context.Context, conn *websocket.Conn, id int64) error {
	b, _ := json.Marshal(map[string]any{"type": "session_info", "session_id": id, "tty": false})
	return conn.Write(ctx, websocket.MessageText, b)
}

// keepReading reads the client's EOF frame, then answers pings and notices
// the client's close in the background; the returned context ends then.
func keepReading(ctx context.Context, conn *websocket.Conn) context.Context {
	conn.Read(ctx)
	return conn.CloseRead(ctx)
}

func frame(id byte, payload string) []byte { return append([]byte{id}, payload...) }

func TestExecFrames(t *testing.T) {
	is := is.New(t)
	var query string
	var firstFrame []byte
	serverDone := make(chan struct{})
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		conn := accept(t, w, r, "signal, Resize")
		defer close(serverDone)
		defer conn.CloseNow()
		ctx := r.Context()
		sendInfo(ctx, conn, 41)
		_, firstFrame, _ = conn.Read(ctx)
		// Output only after the client's Exec has returned and its ctx ended.
		time.Sleep(50 * time.Millisecond)
		conn.Write(ctx, websocket.MessageBinary, frame(1, "out1 "))
		conn.Write(ctx, websocket.MessageText, []byte(`{"type":"port_opened","port":8080}`))
		conn.Write(ctx, websocket.MessageBinary, frame(2, "err1"))
		conn.Write(ctx, websocket.MessageBinary, frame(5, "agent"))
		conn.Write(ctx, websocket.MessageBinary, frame(1, "out2"))
		conn.Write(ctx, websocket.MessageBinary, []byte{3, 7})
		// Like the real server, stay open after the exit frame.
		rctx := conn.CloseRead(ctx)
		select {
		case <-time.After(5 * time.Second):
		case <-rctx.Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	e, err := c.Exec(ctx, "s", ExecOptions{Argv: []string{"sh", "-c", "echo hi"}, Dir: "/workspace",
		Env: []string{"A=1", "B=x y"}, Detachable: true, MaxRunAfterDisconnect: 30 * time.Second})
	cancel()                                                 // ctx bounds the handshake only
	is.NoErr(err)                                            // exec
	is.Equal(e.SessionID(), int64(41))                       // from session_info
	is.Equal(e.Capabilities(), []string{"signal", "resize"}) // from the header
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code, err := e.Wait(&stdout, &stderr)
	is.NoErr(err)                                                                                                                                        // exited
	is.Equal(code, 7)                                                                                                                                    // exit code
	is.Equal(stdout.String(), "out1 out2")                                                                                                               // stdout frames
	is.Equal(stderr.String(), "err1")                                                                                                                    // stderr frames
	is.True(time.Since(start) < 2*time.Second)                                                                                                           // did not wait for the server's close
	is.Equal(firstFrame, []byte{4})                                                                                                                      // EOF sent at once without stdin
	is.Equal(query, "cmd=sh&cmd=-c&cmd=echo+hi&detachable=true&dir=%2Fworkspace&env=A%3D1&env=B%3Dx+y&max_run_after_disconnect=30s&path=sh&stdin=false") // query
	select {
	case <-serverDone:
	case <-time.After(2 * time.Second):
		t.Fatal("the client did not close the socket") // closed at once
	}
}

func TestExecStdin(t *testing.T) {
	is := is.New(t)
	var largest atomic.Int64
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("stdin") != "true" {
			w.WriteHeader(400)
			return
		}
		conn := accept(t, w, r, "")
		defer conn.CloseNow()
		ctx := r.Context()
		sendInfo(ctx, conn, 1)
		// Echo stdin to stdout until EOF.
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if len(b) > 0 && b[0] == 4 {
				break
			}
			largest.Store(max(largest.Load(), int64(len(b))))
			if len(b) > 0 && b[0] == 0 {
				conn.Write(ctx, websocket.MessageBinary, frame(1, string(b[1:])))
			}
		}
		conn.Write(ctx, websocket.MessageBinary, []byte{3, 0})
	})
	e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"cat"}, Stdin: true})
	is.NoErr(err) // exec
	big := strings.Repeat("z", 100<<10)
	go func() {
		io.WriteString(e.Stdin(), "hello ")
		io.WriteString(e.Stdin(), big)
		e.Stdin().Close()
	}()
	var out bytes.Buffer
	code, err := e.Wait(&out, nil)
	is.NoErr(err)                        // exited
	is.Equal(code, 0)                    // code
	is.Equal(out.String(), "hello "+big) // stdin echoed, in chunks
	_, err = e.Stdin().Write([]byte("late"))
	is.True(err != nil) // stdin closed
}

func TestExecOversizedFrame(t *testing.T) {
	is := is.New(t)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		conn := accept(t, w, r, "")
		defer conn.CloseNow()
		sendInfo(r.Context(), conn, 1)
		conn.Write(r.Context(), websocket.MessageBinary, frame(1, "ok"))
		conn.Write(r.Context(), websocket.MessageBinary, append([]byte{1}, make([]byte, MaxFrameSize+10)...))
		conn.Write(r.Context(), websocket.MessageBinary, []byte{3, 0})
		time.Sleep(time.Second)
	})
	e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
	is.NoErr(err) // exec
	var out bytes.Buffer
	_, err = e.Wait(&out, nil)
	is.True(errors.Is(err, ErrFrameTooLarge)) // refused
	is.True(!errors.Is(err, ErrDisconnected)) // not worth attaching again
	is.Equal(out.String(), "ok")              // what came before is delivered
}

func TestExecDropped(t *testing.T) {
	is := is.New(t)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		conn := accept(t, w, r, "")
		sendInfo(r.Context(), conn, 9)
		conn.Write(r.Context(), websocket.MessageBinary, frame(1, "partial"))
		conn.CloseNow()
	})
	e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
	is.NoErr(err) // exec
	var out bytes.Buffer
	_, err = e.Wait(&out, nil)
	is.True(errors.Is(err, ErrDisconnected)) // dropped before exit
	is.Equal(out.String(), "partial")        // output so far
	is.Equal(e.SessionID(), int64(9))        // what to attach to
}

func TestExecKeepalive(t *testing.T) {
	t.Run("silent socket is dead", func(t *testing.T) {
		is := is.New(t)
		release := make(chan struct{})
		defer close(release)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			conn := accept(t, w, r, "")
			defer conn.CloseNow()
			sendInfo(r.Context(), conn, 1)
			// Never read: pings go unanswered.
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		is.NoErr(err) // exec
		start := time.Now()
		_, err = e.Wait(nil, nil)
		is.True(errors.Is(err, ErrDisconnected))                     // treated as dropped
		is.True(strings.Contains(err.Error(), "no message or pong")) // and says why
		is.True(time.Since(start) < 2*time.Second)                   // after DeadAfter, not never
	})
	t.Run("pongs keep it alive", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			conn := accept(t, w, r, "")
			defer conn.CloseNow()
			sendInfo(r.Context(), conn, 1)
			// Answer pings (CloseRead reads control frames) but send
			// nothing for three DeadAfters.
			ctx := keepReading(r.Context(), conn)
			time.Sleep(900 * time.Millisecond)
			conn.Write(ctx, websocket.MessageBinary, []byte{3, 5})
			<-ctx.Done()
		})
		e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		is.NoErr(err) // exec
		code, err := e.Wait(nil, nil)
		is.NoErr(err)     // alive throughout
		is.Equal(code, 5) // exit
	})
	t.Run("slow writer is not silence", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			conn := accept(t, w, r, "")
			defer conn.CloseNow()
			sendInfo(r.Context(), conn, 1)
			for i := range 20 {
				conn.Write(r.Context(), websocket.MessageBinary, frame(1, fmt.Sprint(i%10)))
			}
			conn.Write(r.Context(), websocket.MessageBinary, []byte{3, 0})
			// Never read: no pongs either.
			<-r.Context().Done()
		})
		e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		is.NoErr(err) // exec
		w := &slowWriter{delay: 700 * time.Millisecond}
		code, err := e.Wait(w, nil)
		is.NoErr(err)                                    // a blocked writer is backpressure, not a dead socket
		is.Equal(code, 0)                                // exit
		is.Equal(w.buf.String(), "01234567890123456789") // all output
	})
}

// slowWriter blocks its first write for delay.
type slowWriter struct {
	delay time.Duration
	once  sync.Once
	buf   bytes.Buffer
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { time.Sleep(w.delay) })
	return w.buf.Write(p)
}

func TestExecNoSessionInfo(t *testing.T) {
	is := is.New(t)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		conn := accept(t, w, r, "")
		defer conn.CloseNow()
		keepReading(r.Context(), conn)
		time.Sleep(500 * time.Millisecond)
		conn.Write(r.Context(), websocket.MessageBinary, frame(1, "late"))
		conn.Write(r.Context(), websocket.MessageBinary, []byte{3, 2})
		time.Sleep(time.Second)
	})
	start := time.Now()
	e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
	is.NoErr(err)                                      // exec
	is.True(time.Since(start) >= 300*time.Millisecond) // waited SessionInfoWait
	is.True(time.Since(start) < 2*time.Second)         // and not much longer
	is.Equal(e.SessionID(), int64(-1))                 // unknown
	var out bytes.Buffer
	code, err := e.Wait(&out, nil)
	is.NoErr(err)                  // exited
	is.Equal(code, 2)              // code
	is.Equal(out.String(), "late") // output
}

func TestExecHandshake(t *testing.T) {
	t.Run("5xx retried", func(t *testing.T) {
		is := is.New(t)
		var n atomic.Int32
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				writeJSON(w, 503, map[string]any{"error": "unavailable"})
				return
			}
			conn := accept(t, w, r, "")
			defer conn.CloseNow()
			sendInfo(r.Context(), conn, 1)
			conn.Write(r.Context(), websocket.MessageBinary, []byte{3, 0})
			time.Sleep(200 * time.Millisecond)
		})
		e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		is.NoErr(err) // second handshake
		code, err := e.Wait(nil, nil)
		is.NoErr(err)                // exited
		is.Equal(code, 0)            // code
		is.Equal(n.Load(), int32(2)) // one retry
	})
	t.Run("4xx not retried", func(t *testing.T) {
		is := is.New(t)
		var n atomic.Int32
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			writeJSON(w, 400, map[string]any{"error": "bad_request", "message": "cmd required"})
		})
		_, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		var e *APIError
		is.True(errors.As(err, &e))         // an APIError from the handshake body
		is.Equal(e.Message, "cmd required") // message
		is.Equal(n.Load(), int32(1))        // not retried
	})
	t.Run("429", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(429)
		})
		_, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		ra, ok := Capacity(err)
		is.True(ok)                 // a capacity error
		is.Equal(ra, 2*time.Second) // its wait
	})
}

func TestAttachLegacyFallback(t *testing.T) {
	is := is.New(t)
	var cnt counter
	var legacyID string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		cnt.add(r)
		if r.URL.Path != "/v1/sprites/s/exec" {
			http.NotFound(w, r)
			return
		}
		legacyID = r.URL.Query().Get("id")
		conn := accept(t, w, r, "")
		defer conn.CloseNow()
		sendInfo(r.Context(), conn, 42)
		conn.Write(r.Context(), websocket.MessageBinary, frame(1, "replay"))
		conn.Write(r.Context(), websocket.MessageBinary, []byte{3, 1})
		time.Sleep(200 * time.Millisecond)
	})
	e, err := c.Attach(context.Background(), "s", 42)
	is.NoErr(err) // attached by the legacy path
	var out bytes.Buffer
	code, err := e.Wait(&out, nil)
	is.NoErr(err)                                     // exited
	is.Equal(code, 1)                                 // code
	is.Equal(out.String(), "replay")                  // replayed output
	is.Equal(cnt.get("GET /v1/sprites/s/exec/42"), 1) // new path first
	is.Equal(cnt.get("GET /v1/sprites/s/exec"), 1)    // then the legacy one
	is.Equal(legacyID, "42")                          // with ?id=

	gone := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sprites/s/exec" {
			writeJSON(w, 400, map[string]any{"error": "bad_request", "message": "cmd required"})
			return
		}
		http.NotFound(w, r)
	})
	_, err = gone.Attach(context.Background(), "s", 42)
	is.True(IsNotFound(err)) // the session is gone, whatever the legacy form answers
}

func TestSignal(t *testing.T) {
	t.Run("in band", func(t *testing.T) {
		is := is.New(t)
		var got string
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			conn := accept(t, w, r, "signal")
			defer conn.CloseNow()
			sendInfo(r.Context(), conn, 3)
			for {
				typ, b, err := conn.Read(r.Context())
				if err != nil {
					return
				}
				if typ == websocket.MessageText {
					got = string(b)
					conn.Write(r.Context(), websocket.MessageBinary, []byte{3, 143})
					time.Sleep(200 * time.Millisecond)
					return
				}
			}
		})
		e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"sleep", "100"}})
		is.NoErr(err)                                       // exec
		is.NoErr(e.Signal(context.Background(), "SIGTERM")) // sent
		code, err := e.Wait(nil, nil)
		is.NoErr(err)                                      // exited
		is.Equal(code, 143)                                // by the signal
		is.Equal(got, `{"signal":"TERM","type":"signal"}`) // bare name, in band
		is.NoErr(e.Signal(context.Background(), "KILL"))   // after exit: nothing to do
	})
	t.Run("kill endpoint returns once sent", func(t *testing.T) {
		is := is.New(t)
		var killQuery string
		release := make(chan struct{})
		defer close(release)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/kill") {
				killQuery = r.URL.RawQuery
				w.Header().Set("Content-Type", "application/x-ndjson")
				io.WriteString(w, `{"type":"signal","signal":"SIGINT","pid":12}`+"\n")
				w.(http.Flusher).Flush()
				// The process ignores it; the server would wait and escalate.
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			conn := accept(t, w, r, "")
			defer conn.CloseNow()
			sendInfo(r.Context(), conn, 8)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
		is.NoErr(err) // exec
		defer e.Close()
		start := time.Now()
		is.NoErr(e.Signal(context.Background(), "INT")) // sent through the endpoint
		is.True(time.Since(start) < time.Second)        // without waiting for the process
		is.Equal(killQuery, "signal=SIGINT")            // SIG-prefixed name
	})
}

func TestKillProgress(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"killed", `{"type":"signal"}` + "\n" + `{"type":"timeout"}` + "\n" + `{"type":"killed","exit_code":137}` + "\n", true},
		{"complete", `{"type":"signal"}` + "\n\n" + `{"type":"complete"}`, true},
		{"error", `{"type":"error","message":"no such process"}` + "\n", false},
		{"junk", "not json\n", false},
		{"empty", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			var q string
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				q = r.URL.RawQuery
				io.WriteString(w, tc.body)
			})
			err := c.Kill(context.Background(), "s", 5, "term", 3*time.Second)
			is.Equal(err == nil, tc.ok)              // outcome
			is.Equal(q, "signal=SIGTERM&timeout=3s") // query
		})
	}
}

func TestListExec(t *testing.T) {
	is := is.New(t)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"sessions":[{"id":3,"command":"sleep 10","workdir":"/w","created":"2026-01-01T00:00:00Z","is_active":true,"tty":false},
			{"id":"4","command":["bash","-c","x"],"is_active":false}]}`)
	})
	list, err := c.ListExec(context.Background(), "s")
	is.NoErr(err)                          // listed
	is.Equal(len(list), 2)                 // two sessions
	is.Equal(list[0].ID, int64(3))         // id
	is.Equal(list[0].Command, "sleep 10")  // command string
	is.True(list[0].Active)                // active
	is.Equal(list[0].Created.Year(), 2026) // created
	is.Equal(list[1].ID, int64(4))         // string id
	is.Equal(list[1].Command, "bash -c x") // argv command
}

func TestExecCloseEndsWait(t *testing.T) {
	is := is.New(t)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		conn := accept(t, w, r, "")
		defer conn.CloseNow()
		sendInfo(r.Context(), conn, 1)
		<-keepReading(r.Context(), conn).Done()
	})
	e, err := c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
	is.NoErr(err) // exec
	go func() {
		time.Sleep(50 * time.Millisecond)
		e.Close()
	}()
	_, err = e.Wait(nil, nil)
	is.True(errors.Is(err, ErrClosed)) // Close ends Wait
	_, err = e.Wait(nil, nil)
	is.True(err != nil) // Wait once
}
