package spritesfake_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/coder/websocket"
)

// execFake is a fake with one sprite "s", for tests that run commands.
func execFake(t *testing.T, o spritesfake.Options) *spritesfake.Fake {
	t.Helper()
	spritesfake.RequireExec(t)
	f := spritesfake.New(t, o)
	mkSprite(t, f, "s")
	return f
}

// session_info first, then stdout, stderr and exit frames; the socket
// closes about CloseDelay after the exit frame.
func TestExecFrames(t *testing.T) {
	t.Parallel()
	const delay = 500 * time.Millisecond
	f := execFake(t, spritesfake.Options{CloseDelay: delay})
	c, resp, id := startExec(t, f, "s", nil, "sh", "-c", "echo out; echo err >&2; exit 3")
	if got := resp.Header.Get("X-Sprite-Capabilities"); got != "signal" {
		t.Errorf("X-Sprite-Capabilities %q, want signal", got)
	}
	r := readRun(t, c, 10*time.Second)
	if r.stdout != "out\n" || r.stderr != "err\n" || r.exit != 3 {
		t.Fatalf("stdout %q, stderr %q, exit %d; want out, err, 3 (%v)", r.stdout, r.stderr, r.exit, r.err)
	}
	if last := r.frames[len(r.frames)-1]; last[0] != 3 {
		t.Errorf("last frame %v is not the exit frame", last)
	}
	if !closedNormally(r.err) {
		t.Errorf("socket ended with %v, want a normal close", r.err)
	}
	// The client sees the exit frame a little after the fake sent it
	// (and started waiting), hence the slack below.
	if open := r.closedAt.Sub(r.exitAt); open < delay-200*time.Millisecond || open > delay+2*time.Second {
		t.Errorf("socket stayed open %s after the exit frame, want about %s", open, delay)
	}
	s := waitEnded(t, f, "s", id, 5*time.Second)
	if s.ExitCode != 3 || s.Dir != "/home/sprite" || s.Argv[0] != "sh" {
		t.Errorf("ExecSessions %+v", s)
	}
	// The session list of §6.2.
	st, _, b := call(t, f, "GET", "/v1/sprites/s/exec", nil)
	wantStatus(t, "list sessions", st, http.StatusOK, b)
	sessions := decode(t, b)["sessions"].([]any)
	if len(sessions) != 1 {
		t.Fatalf("sessions %s", b)
	}
	e := sessions[0].(map[string]any)
	for _, k := range []string{"id", "command", "workdir", "created", "bytes_per_second", "is_active", "tty", "last_activity"} {
		if _, ok := e[k]; !ok {
			t.Errorf("session has no %q: %v", k, e)
		}
	}
	if e["id"] != float64(id) || e["is_active"] != false || !strings.HasPrefix(e["command"].(string), "sh -c") {
		t.Errorf("session %v", e)
	}
}

// Stdin frames feed the process; the EOF frame closes its stdin.
func TestExecStdin(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	c, _, _ := startExec(t, f, "s", url.Values{"stdin": {"true"}}, "cat")
	ctx := t.Context()
	for _, chunk := range []string{"hello ", "world\n"} {
		if err := c.Write(ctx, websocket.MessageBinary, append([]byte{0}, chunk...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte{4}); err != nil {
		t.Fatal(err)
	}
	r := readRun(t, c, 10*time.Second)
	if r.stdout != "hello world\n" || r.exit != 0 {
		t.Fatalf("cat gave %q, exit %d (%v)", r.stdout, r.exit, r.err)
	}
	// Without stdin=true the command reads nothing (and does not wait).
	c, _, _ = startExec(t, f, "s", nil, "cat")
	if r := readRun(t, c, 10*time.Second); r.stdout != "" || r.exit != 0 {
		t.Fatalf("cat without stdin gave %q, exit %d", r.stdout, r.exit)
	}
}

// An in-band signal reaches the command (not only bwrap): bare and
// SIG-prefixed names; a signalled command exits 128+n; a trap runs.
func TestExecSignal(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	for _, tc := range []struct {
		sig  string
		argv []string
		out  string
		exit int
	}{
		{"TERM", []string{"sleep", "100"}, "", 128 + 15},
		{"SIGINT", []string{"sleep", "100"}, "", 128 + 2},
		{"TERM", []string{"sh", "-c", `trap 'echo trapped; exit 7' TERM; echo ready; while :; do sleep 0.05; done`}, "ready\ntrapped\n", 7},
	} {
		c, _, _ := startExec(t, f, "s", nil, tc.argv...)
		if tc.out != "" {
			// Wait for the trap to be set.
			typ, b, err := c.Read(t.Context())
			if err != nil || typ != websocket.MessageBinary || string(b[1:]) != "ready\n" {
				t.Fatalf("read ready: %q %v", b, err)
			}
			tc.out = strings.TrimPrefix(tc.out, "ready\n")
		}
		sendText(t, c, map[string]any{"type": "signal", "signal": tc.sig})
		r := readRun(t, c, 10*time.Second)
		if r.exit != tc.exit || r.stdout != tc.out {
			t.Errorf("%s to %v: exit %d, stdout %q; want %d, %q", tc.sig, tc.argv, r.exit, r.stdout, tc.exit, tc.out)
		}
	}
}

// Without the "signal" capability the header is absent and in-band
// signals are ignored; the kill endpoint still works.
func TestExecNoSignalCapability(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{Capabilities: []string{}})
	c, resp, id := startExec(t, f, "s", nil, "sleep", "100")
	if _, ok := resp.Header["X-Sprite-Capabilities"]; ok {
		t.Errorf("X-Sprite-Capabilities present: %q", resp.Header.Get("X-Sprite-Capabilities"))
	}
	sendText(t, c, map[string]any{"type": "signal", "signal": "KILL"})
	time.Sleep(300 * time.Millisecond)
	if s, _ := session(f, "s", id); !s.Active {
		t.Fatalf("an in-band signal ended the command without the capability")
	}
	st, _, b := call(t, f, "POST", fmt.Sprintf("/v1/sprites/s/exec/%d/kill?signal=KILL", id), nil)
	wantStatus(t, "kill", st, http.StatusOK, b)
	if r := readRun(t, c, 10*time.Second); r.exit != 128+9 {
		t.Errorf("exit %d after kill, want 137", r.exit)
	}
}

// ndjson splits an NDJSON body into objects.
func ndjson(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, decode(t, sc.Bytes()))
	}
	return out
}

func types(lines []map[string]any) string {
	var ts []string
	for _, l := range lines {
		ts = append(ts, l["type"].(string))
	}
	return strings.Join(ts, ",")
}

// The kill endpoint: signal, exit, complete; timeout then SIGKILL for a
// command that ignores the signal; 410 once it has exited; 404 unknown.
func TestExecKill(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	c, _, id := startExec(t, f, "s", nil, "sleep", "100")
	st, h, b := call(t, f, "POST", fmt.Sprintf("/v1/sprites/s/exec/%d/kill?signal=SIGTERM&timeout=5s", id), nil)
	wantStatus(t, "kill", st, http.StatusOK, b)
	lines := ndjson(t, b)
	if h.Get("Content-Type") != "application/x-ndjson" || types(lines) != "signal,exited,complete" || lines[1]["exit_code"] != float64(143) || lines[0]["signal"] != "SIGTERM" {
		t.Errorf("kill progress %s (%s)", b, h.Get("Content-Type"))
	}
	if r := readRun(t, c, 10*time.Second); r.exit != 143 {
		t.Errorf("exit %d after SIGTERM, want 143", r.exit)
	}
	st, _, b = call(t, f, "POST", fmt.Sprintf("/v1/sprites/s/exec/%d/kill", id), nil)
	wantError(t, "kill an exited session", st, b, http.StatusGone, "session_exited")

	// SIG_IGN is inherited through exec, so sleep ignores TERM too.
	c, _, id = startExec(t, f, "s", nil, "sh", "-c", "trap '' TERM; echo ready; sleep 100")
	if _, b, err := c.Read(t.Context()); err != nil || string(b) != "\x01ready\n" {
		t.Fatalf("read ready: %q %v", b, err)
	}
	st, _, b = call(t, f, "POST", fmt.Sprintf("/v1/sprites/s/exec/%d/kill?signal=TERM&timeout=300ms", id), nil)
	wantStatus(t, "kill with timeout", st, http.StatusOK, b)
	if lines := ndjson(t, b); types(lines) != "signal,timeout,killed,exited,complete" || lines[3]["exit_code"] != float64(137) {
		t.Errorf("kill progress %s", b)
	}
	if r := readRun(t, c, 10*time.Second); r.exit != 137 {
		t.Errorf("exit %d after SIGKILL, want 137", r.exit)
	}
	st, _, b = call(t, f, "POST", "/v1/sprites/s/exec/999/kill", nil)
	wantError(t, "kill unknown", st, b, http.StatusNotFound, "not_found")
	st, _, b = call(t, f, "POST", fmt.Sprintf("/v1/sprites/s/exec/%d/kill?signal=NOPE", id), nil)
	wantError(t, "kill with a bad signal", st, b, http.StatusBadRequest, "invalid_request")
}

// A connection dropped mid-stream leaves the process running; an attach
// replays the output from the start after session_info, then follows it
// to the exit.
func TestExecDropAndAttach(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	f.Inject(spritesfake.Fault{Op: "exec", DropAfterFrames: 2})
	script := "for i in 1 2 3 4 5 6; do echo $i; sleep 0.1; done; sleep 0.5"
	const all = "1\n2\n3\n4\n5\n6\n"
	c, _, id := startExec(t, f, "s", nil, "sh", "-c", script)
	r := readRun(t, c, 10*time.Second)
	// Two frames, usually "1" and "2" (a slow reader may get more lines
	// in one).
	if len(r.frames) != 2 || r.exit != -1 || !strings.HasPrefix(all, r.stdout) {
		t.Fatalf("before the drop: %d frames, %q, exit %d", len(r.frames), r.stdout, r.exit)
	}
	if websocket.CloseStatus(r.err) != -1 {
		t.Fatalf("the drop sent a close frame: %v", r.err)
	}
	if s, _ := session(f, "s", id); !s.Active {
		t.Fatalf("the drop ended the process")
	}
	a, _, err := dial(t, f, fmt.Sprintf("/v1/sprites/s/exec/%d", id))
	if err != nil {
		t.Fatal(err)
	}
	if got := readInfo(t, a); got != id {
		t.Fatalf("attach session_info id %d, want %d", got, id)
	}
	r = readRun(t, a, 10*time.Second)
	if r.stdout != all || r.exit != 0 || !closedNormally(r.err) {
		t.Fatalf("attach gave %q, exit %d, %v", r.stdout, r.exit, r.err)
	}
	// Attaching to the finished session replays everything and the exit.
	a, _, err = dial(t, f, fmt.Sprintf("/v1/sprites/s/exec?id=%d", id)) // the older servers' form
	if err != nil {
		t.Fatal(err)
	}
	readInfo(t, a)
	if r := readRun(t, a, 10*time.Second); r.stdout != all || r.exit != 0 {
		t.Fatalf("attach after the end gave %q, exit %d", r.stdout, r.exit)
	}
	if n := f.Requests("attach"); n != 2 {
		t.Errorf("Requests(attach) = %d", n)
	}
	_, resp, err := dial(t, f, "/v1/sprites/s/exec/999")
	if err == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("attach unknown session: %v %v", err, resp)
	}
}

// After its last client goes, a process runs max_run_after_disconnect and
// is then killed, unless someone attached meanwhile.
func TestExecDisconnect(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	q := url.Values{"detachable": {"true"}, "max_run_after_disconnect": {"1s"}}

	c, _, id := startExec(t, f, "s", q, "sleep", "100")
	gone := time.Now()
	c.CloseNow()
	time.Sleep(500 * time.Millisecond)
	if s, _ := session(f, "s", id); !s.Active || !s.Detachable || s.MaxRunAfterDisconnect != time.Second {
		t.Fatalf("detached session %+v, want it running", s)
	}
	s := waitEnded(t, f, "s", id, 10*time.Second)
	if !s.KilledAfterDisconnect || s.ExitCode != 137 || time.Since(gone) < time.Second {
		t.Errorf("after the disconnect window: %+v after %s", s, time.Since(gone))
	}

	// Re-attached in time, it keeps running.
	c, _, id = startExec(t, f, "s", q, "sleep", "100")
	c.Close(websocket.StatusNormalClosure, "") // a client closing cleanly detaches too
	time.Sleep(300 * time.Millisecond)
	a, _, err := dial(t, f, fmt.Sprintf("/v1/sprites/s/exec/%d", id))
	if err != nil {
		t.Fatal(err)
	}
	readInfo(t, a)
	time.Sleep(1500 * time.Millisecond)
	if s, _ := session(f, "s", id); !s.Active || s.Attached != 1 {
		t.Fatalf("re-attached session %+v, want it running with one client", s)
	}
	sendText(t, a, map[string]any{"type": "signal", "signal": "TERM"})
	if r := readRun(t, a, 10*time.Second); r.exit != 143 {
		t.Errorf("exit %d", r.exit)
	}

	// Without max_run_after_disconnect: the non-TTY default of 10 s.
	c, _, id = startExec(t, f, "s", nil, "sleep", "100")
	if s, _ := session(f, "s", id); s.MaxRunAfterDisconnect != 10*time.Second {
		t.Errorf("default max_run_after_disconnect %s", s.MaxRunAfterDisconnect)
	}
	c.CloseNow()
}

// Commands see the sprite's home, workspace and tmp at their paths, cwd
// and environment as asked, and cannot write to the host's /usr.
func TestExecSandbox(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	root := f.SpriteDir("s")
	st, _, b := call(t, f, "PUT", fsPath("write", url.Values{"path": {"/workspace/in.txt"}}), "from the API")
	wantStatus(t, "write", st, http.StatusOK, b)
	marker := "/usr/spritesfake-" + strconv.Itoa(os.Getpid())
	script := `pwd; echo "$HOME"; cat /workspace/in.txt; echo; echo hi > /home/sprite/f; echo t > /tmp/t; ` +
		`touch ` + marker + ` 2>/dev/null || echo ro; touch /newdir 2>/dev/null || echo ro2`
	c, _, _ := startExec(t, f, "s", nil, "sh", "-c", script)
	r := readRun(t, c, 10*time.Second)
	if want := "/home/sprite\n/home/sprite\nfrom the API\nro\nro2\n"; r.stdout != want || r.exit != 0 {
		t.Errorf("stdout %q (stderr %q), exit %d; want %q", r.stdout, r.stderr, r.exit, want)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		os.Remove(marker)
		t.Fatalf("a command wrote to the host's /usr")
	}
	for p, want := range map[string]string{"home/sprite/f": "hi\n", "tmp/t": "t\n"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s on the host: %q, %v", p, b, err)
		}
	}
	st, _, b = call(t, f, "GET", fsPath("read", url.Values{"path": {"/home/sprite/f"}}), nil)
	if st != http.StatusOK || string(b) != "hi\n" {
		t.Errorf("read back through the API: %d %q", st, b)
	}

	// dir= and env= (which replaces the environment).
	c, _, _ = startExec(t, f, "s", url.Values{"dir": {"/workspace"}, "env": {"FOO=bar"}}, "sh", "-c", `pwd; echo "$FOO:$HOME"`)
	if r := readRun(t, c, 10*time.Second); r.stdout != "/workspace\nbar:\n" {
		t.Errorf("dir and env: %q (stderr %q)", r.stdout, r.stderr)
	}
	// The create-time environment joins the default one.
	st, _, b = call(t, f, "POST", "/v1/sprites", map[string]any{"name": "e", "environment": map[string]string{"GREETING": "hey"}})
	wantStatus(t, "create with environment", st, http.StatusCreated, b)
	c, _, _ = startExec(t, f, "e", nil, "sh", "-c", `echo "$GREETING $HOME"`)
	if r := readRun(t, c, 10*time.Second); r.stdout != "hey /home/sprite\n" {
		t.Errorf("create-time environment: %q", r.stdout)
	}
	// The sprite's status follows its processes.
	c, _, id := startExec(t, f, "s", nil, "sleep", "100")
	st, _, b = call(t, f, "GET", "/v1/sprites/s", nil)
	if decode(t, b)["status"] != "running" {
		t.Errorf("status with a running command: %s", b)
	}
	sendText(t, c, map[string]any{"type": "signal", "signal": "KILL"})
	readRun(t, c, 10*time.Second)
	waitEnded(t, f, "s", id, 5*time.Second)
	if _, _, b = call(t, f, "GET", "/v1/sprites/s", nil); decode(t, b)["status"] != "warm" {
		t.Errorf("status after the command: %s", b)
	}
}

// Exec errors before the upgrade are JSON: unknown sprite, no cmd.
func TestExecErrors(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{})
	for path, want := range map[string]int{
		execPath("nope", nil, "true"):                                           http.StatusNotFound,
		"/v1/sprites/s/exec?stdin=true":                                         http.StatusBadRequest,
		execPath("s", url.Values{"max_run_after_disconnect": {"soon"}}, "true"): http.StatusBadRequest,
	} {
		_, resp, err := dial(t, f, path)
		if err == nil || resp == nil || resp.StatusCode != want {
			t.Errorf("%s: %v, %v; want %d", path, err, resp, want)
		}
	}
	// A missing program: bwrap says so on stderr and the exit is non-zero.
	c, _, _ := startExec(t, f, "s", nil, "/no/such/program")
	if r := readRun(t, c, 10*time.Second); r.exit == 0 || r.stderr == "" {
		t.Errorf("missing program: exit %d, stderr %q", r.exit, r.stderr)
	}
}

// recorder is a testing.TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// Without bubblewrap an exec fails loudly: 500 and a test error.
func TestExecWithoutBwrap(t *testing.T) {
	t.Parallel()
	rec := &recorder{TB: t}
	f := spritesfake.New(rec, spritesfake.Options{Bwrap: "/no/such/bwrap"})
	mkSprite(t, f, "s")
	_, resp, err := dial(t, f, execPath("s", nil, "true"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("exec without bwrap: %v, %v; want 500", err, resp)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "RequireExec") {
		t.Errorf("test errors %q", rec.errors)
	}
}

// Deleting a sprite kills its processes; Close (at Cleanup) kills every
// process and leaves no goroutine behind. Not parallel: it counts
// goroutines.
func TestCloseLeavesNothing(t *testing.T) {
	spritesfake.RequireExec(t)
	before := runtime.NumGoroutine()
	var pids []int
	t.Run("fake", func(t *testing.T) {
		f := spritesfake.New(t, spritesfake.Options{})
		mkSprite(t, f, "s")
		mkSprite(t, f, "d")
		startExec(t, f, "s", nil, "sleep", "100") // attached
		c, _, _ := startExec(t, f, "s", url.Values{"max_run_after_disconnect": {"0"}}, "sh", "-c", "sleep 100 & sleep 100")
		c.CloseNow() // detached, runs forever
		c, _, _ = startExec(t, f, "d", nil, "sleep", "100")
		for _, name := range []string{"s", "d"} {
			for _, s := range f.ExecSessions(name) {
				// bwrap, and the group of pid 1 of its namespace, which
				// holds the command's tree.
				pids = append(pids, s.PID, nsInit(t, s.PID))
			}
		}
		st, _, b := call(t, f, "DELETE", "/v1/sprites/d", nil)
		wantStatus(t, "delete with a running command", st, http.StatusNoContent, b)
		if r := readRun(t, c, 10*time.Second); r.exit != 137 {
			t.Errorf("command of a deleted sprite: exit %d", r.exit)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	if len(pids) != 6 {
		t.Fatalf("pids %v", pids)
	}
	for _, pid := range pids {
		if !testkit.Eventually(5*time.Second, func() bool { return syscall.Kill(-pid, 0) == syscall.ESRCH && syscall.Kill(pid, 0) == syscall.ESRCH }) {
			t.Errorf("process group %d still alive after Close", pid)
		}
	}
	if !testkit.Eventually(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}
}

// nsInit is bwrap's child, pid 1 of the sandbox's pid namespace and the
// leader of the command's process group.
func nsInit(t *testing.T, bwrap int) int {
	t.Helper()
	var init int
	if !testkit.Eventually(5*time.Second, func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", bwrap, bwrap))
		init, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return init > 0
	}) {
		t.Fatalf("bwrap %d has no child", bwrap)
	}
	return init
}

// Beyond ReplayLimit the oldest output is discarded: an attach replays
// only the newest part.
func TestExecReplayLimit(t *testing.T) {
	t.Parallel()
	f := execFake(t, spritesfake.Options{ReplayLimit: 64})
	c, _, id := startExec(t, f, "s", nil, "sh", "-c", "for i in $(seq 1 40); do echo line$i; sleep 0.01; done")
	var full strings.Builder
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&full, "line%d\n", i)
	}
	readRun(t, c, 20*time.Second)
	a, _, err := dial(t, f, fmt.Sprintf("/v1/sprites/s/exec/%d", id))
	if err != nil {
		t.Fatal(err)
	}
	readInfo(t, a)
	r := readRun(t, a, 10*time.Second)
	if r.exit != 0 || !strings.HasSuffix(full.String(), r.stdout) || !strings.HasSuffix(r.stdout, "line40\n") || len(r.stdout) >= full.Len() {
		t.Errorf("replay after the limit: %q, exit %d; want a tail of the output", r.stdout, r.exit)
	}
}
