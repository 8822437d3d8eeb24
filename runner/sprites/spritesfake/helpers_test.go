package spritesfake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/coder/websocket"
)

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }

// call sends one authorised request and returns the status, headers and
// body.
func call(t *testing.T, f *spritesfake.Fake, method, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	return callToken(t, f, f.Token(), method, path, body)
}

func callToken(t *testing.T, f *spritesfake.Fake, token, method, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// decode parses a JSON object.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", b, err)
	}
	return m
}

// wantStatus checks a status, showing the body when it is not the one.
func wantStatus(t *testing.T, what string, got, want int, body []byte) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, got, want, body)
	}
}

// wantError checks the service's JSON error body of §6.1.
func wantError(t *testing.T, what string, status int, body []byte, wantStatusCode int, code string) map[string]any {
	t.Helper()
	wantStatus(t, what, status, wantStatusCode, body)
	m := decode(t, body)
	if m["error"] != code {
		t.Fatalf("%s: error %v, want %q (body %s)", what, m["error"], code, body)
	}
	if s, _ := m["message"].(string); s == "" {
		t.Fatalf("%s: no message in %s", what, body)
	}
	return m
}

// mkSprite creates a sprite and fails the test otherwise.
func mkSprite(t *testing.T, f *spritesfake.Fake, name string) map[string]any {
	t.Helper()
	st, _, b := call(t, f, "POST", "/v1/sprites", map[string]any{"name": name})
	wantStatus(t, "create "+name, st, http.StatusCreated, b)
	return decode(t, b)
}

func wsURL(f *spritesfake.Fake, path string) string {
	return "ws" + strings.TrimPrefix(f.URL(), "http") + path
}

// dial opens a WebSocket to path (with its query) the way a client does.
func dial(t *testing.T, f *spritesfake.Fake, path string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(f, path), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + f.Token()}},
	})
	if err == nil {
		c.SetReadLimit(1 << 20)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// execPath is the exec URL path of sprite name for argv and extra query.
func execPath(name string, extra url.Values, argv ...string) string {
	q := url.Values{"cmd": argv}
	for k, v := range extra {
		q[k] = v
	}
	return "/v1/sprites/" + url.PathEscape(name) + "/exec?" + q.Encode()
}

// startExec opens an exec socket and reads session_info.
func startExec(t *testing.T, f *spritesfake.Fake, name string, extra url.Values, argv ...string) (*websocket.Conn, *http.Response, int) {
	t.Helper()
	c, resp, err := dial(t, f, execPath(name, extra, argv...))
	if err != nil {
		t.Fatalf("exec %v: %v (response %v)", argv, err, resp)
	}
	return c, resp, readInfo(t, c)
}

// readInfo reads the first message, which must be session_info, and
// returns its session id.
func readInfo(t *testing.T, c *websocket.Conn) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read session_info: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("first message is binary %q, want session_info", b)
	}
	m := decode(t, b)
	if m["type"] != "session_info" || m["tty"] != false {
		t.Fatalf("first message %s, want session_info with tty false", b)
	}
	id, ok := m["session_id"].(float64)
	if !ok || id <= 0 {
		t.Fatalf("session_info without a session_id: %s", b)
	}
	return int(id)
}

// run is what a client read from an exec socket after session_info.
type run struct {
	frames   [][]byte // binary messages in order, stream byte first
	stdout   string
	stderr   string
	exit     int // -1: no exit frame
	exitAt   time.Time
	closedAt time.Time
	err      error // what ended the reading
	texts    int   // text messages after session_info
}

// readRun reads until the socket ends (or within passes).
func readRun(t *testing.T, c *websocket.Conn, within time.Duration) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r := run{exit: -1}
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			r.err, r.closedAt = err, time.Now()
			return r
		}
		if typ == websocket.MessageText {
			r.texts++
			continue
		}
		if len(b) == 0 {
			t.Fatalf("empty binary message")
		}
		if r.exit >= 0 {
			t.Errorf("frame %q after the exit frame", b)
		}
		r.frames = append(r.frames, b)
		switch b[0] {
		case 1:
			r.stdout += string(b[1:])
		case 2:
			r.stderr += string(b[1:])
		case 3:
			if len(b) != 2 {
				t.Fatalf("exit frame %v, want one byte of code", b)
			}
			r.exit, r.exitAt = int(b[1]), time.Now()
		default:
			t.Fatalf("unexpected stream %d", b[0])
		}
	}
}

// closedNormally reports whether err is the normal close of a socket.
func closedNormally(err error) bool {
	return websocket.CloseStatus(err) == websocket.StatusNormalClosure
}

// sendText sends a JSON text message.
func sendText(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := c.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatalf("send %s: %v", b, err)
	}
}

// session finds one exec session of a sprite.
func session(f *spritesfake.Fake, name string, id int) (spritesfake.ExecInfo, bool) {
	for _, s := range f.ExecSessions(name) {
		if s.ID == id {
			return s, true
		}
	}
	return spritesfake.ExecInfo{}, false
}

// waitEnded waits for an exec session to end and returns it.
func waitEnded(t *testing.T, f *spritesfake.Fake, name string, id int, within time.Duration) spritesfake.ExecInfo {
	t.Helper()
	var s spritesfake.ExecInfo
	if !testkit.Eventually(within, func() bool {
		var ok bool
		s, ok = session(f, name, id)
		return ok && !s.Active
	}) {
		t.Fatalf("session %d still running after %s: %+v", id, within, s)
	}
	return s
}
