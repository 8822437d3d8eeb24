package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/matryer/is"
)

var (
	buildOnce sync.Once
	binDir    string // made by the first aodBinary call, removed by TestMain
	builtBin  string
	buildErr  error
)

// TestMain runs the tests (in parallel, see testkit.Run) and removes the
// built binary's directory once every test is done (a per-test t.TempDir
// would vanish under the tests that share the build).
func TestMain(m *testing.M) {
	code := testkit.Run(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// aodBinary builds the real binary once per test run (CGO off, as shipped).
func aodBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aod-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		builtBin = filepath.Join(dir, "aod")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// serverProc is `aod serve` running as a child process.
type serverProc struct {
	t    testing.TB
	cmd  *exec.Cmd
	base string
	api  *apitest.Client
	logs *strings.Builder
	mu   *sync.Mutex // guards logs
}

// logText is what the server has logged so far.
func (s *serverProc) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

func startServer(t testing.TB, dataDir string, extra ...string) *serverProc {
	t.Helper()
	// No free-disk floor: CI machines may have less than the default free.
	args := append([]string{"--data-dir", dataDir, "serve", "--listen", "127.0.0.1:0", "--min-free-disk", "0"}, extra...)
	cmd := exec.Command(aodBinary(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	mu := &sync.Mutex{}
	cmd.Stderr = writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			// A graceful stop, so the server unmounts its sprites' roots
			// before the test's directories go; KILL if it hangs.
			cmd.Process.Signal(syscall.SIGTERM)
			timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
			cmd.Wait()
			timer.Stop()
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("server printed no address: %v", err)
	}
	go io.Copy(io.Discard, stdout)
	m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no address in %q", line)
	}
	return &serverProc{t: t, cmd: cmd, base: m[1], api: apitest.NewClient(t, m[1]), logs: logs, mu: mu}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// call sends a request with the kit's API client and returns the status
// and the JSON object it answered.
func (s *serverProc) call(method, path, token string, body any) (int, map[string]any) {
	s.t.Helper()
	r := s.api.Do(method, path, token, body)
	return r.Status, r.Obj()
}

// readStream reads a session's stream until it closes or ctx ends, sending
// each event to fn; fn returning false stops reading.
func readStream(ctx context.Context, base, token, id string, fn func(testkit.Frame) bool) error {
	req, err := testkit.Get(ctx, base+"/sessions/"+id+"/stream", map[string]string{"Authorization": "Bearer " + token})
	if err != nil {
		return err
	}
	_, err = testkit.Read(http.DefaultClient, req, func(e testkit.Frame) bool { return !fn(e) })
	return err
}

// TestCrashRecovery kills the server with SIGKILL mid-turn, restarts it on
// the same data dir, and checks that every session reaches a terminal state
// with a terminal event and that no event stored before the crash is lost.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--max-running", "1")
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "crash")
	is.NoErr(err) // token
	token := lastLine(out)

	code, agent := srv.call("POST", "/agents", token, map[string]any{"name": "sh", "runtime": "shell", "model": "local/shell"})
	is.Equal(code, 201) // agent
	agentID := agent["id"].(string)

	// One session finishes before the crash.
	code, done := srv.call("POST", "/sessions", token, map[string]any{"agent_id": agentID, "prompt": "echo finished"})
	is.Equal(code, 202) // first session
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	is.NoErr(readStream(ctx, srv.base, token, done["id"].(string), func(e testkit.Frame) bool { return !e.Terminal() })) // first session ends

	// One runs (printing slowly) when the server dies; two more wait in the
	// queue behind it (--max-running 1).
	code, running := srv.call("POST", "/sessions", token, map[string]any{"agent_id": agentID,
		"prompt": "for i in $(seq 1 100000); do echo line $i; sleep 0.01; done"})
	is.Equal(code, 202) // running session
	var queued []string
	for i := range 2 {
		code, q := srv.call("POST", "/sessions", token, map[string]any{"agent_id": agentID, "prompt": fmt.Sprintf("echo queued %d", i)})
		is.Equal(code, 202) // queued session
		queued = append(queued, q["id"].(string))
	}

	// Read the running session's stream until 20 lines arrived, remembering
	// every stored event seen.
	seen := map[string]string{}
	lines := 0
	is.NoErr(readStream(ctx, srv.base, token, running["id"].(string), func(e testkit.Frame) bool {
		if e.ID != "" {
			b, _ := json.Marshal(e.Data)
			seen[e.ID] = string(b)
		}
		if e.Data["type"] == "output" {
			lines += strings.Count(e.Data["data"].(string), "\n")
		}
		return lines < 20
	})) // stream of the running session
	is.True(lines >= 20) // output was flowing when the server died

	is.NoErr(srv.cmd.Process.Signal(syscall.SIGKILL)) // crash
	srv.cmd.Wait()

	srv2 := startServer(t, dataDir)
	check := func(id string) map[string]any {
		var last map[string]any
		replayed := map[string]string{}
		err := readStream(ctx, srv2.base, token, id, func(e testkit.Frame) bool {
			if e.ID != "" && !e.Terminal() {
				b, _ := json.Marshal(e.Data)
				replayed[e.ID] = string(b)
			}
			last = e.Data
			return !e.Terminal()
		})
		is.NoErr(err) // replay after restart
		if id == running["id"] {
			for eid, data := range seen {
				is.Equal(replayed[eid], data) // every event seen before the crash is still stored, unchanged
			}
		}
		return last
	}
	last := check(running["id"].(string))
	is.Equal(last["type"], "error")                                               // the interrupted session failed
	is.Equal(last["message"], "Session failed: server restarted during the turn") // with the restart as the reason
	is.Equal(check(done["id"].(string))["type"], "exit")                          // the finished one is untouched
	for _, id := range queued {
		last := check(id)
		is.Equal(last["type"], "exit") // queued sessions ran after the restart
		is.Equal(last["code"], 0.0)    // and succeeded
	}
	code, s := srv2.call("GET", "/sessions/"+running["id"].(string), token, nil)
	is.Equal(code, 200)             // session readable
	is.Equal(s["status"], "failed") // and failed
}

// TestGracefulShutdown sends SIGTERM while two turns run: the short one
// finishes inside the grace period, the long one is killed after it and
// recorded failed with the reason, and open streams get their terminal
// events before the server exits.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--shutdown-grace", "2s")
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "term")
	is.NoErr(err) // token
	token := lastLine(out)
	code, agent := srv.call("POST", "/agents", token, map[string]any{"name": "sh", "runtime": "shell", "model": "local/shell"})
	is.Equal(code, 201) // agent
	start := func(prompt string) string {
		code, s := srv.call("POST", "/sessions", token, map[string]any{"agent_id": agent["id"], "prompt": prompt})
		is.Equal(code, 202) // session
		return s["id"].(string)
	}
	long := start("echo started; sleep 1000")
	short := start("echo started; sleep 0.5; echo finished")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	terminals := make(chan map[string]any, 2)
	for _, id := range []string{long, short} {
		started := make(chan struct{})
		go func() {
			var last map[string]any
			once := sync.OnceFunc(func() { close(started) })
			readStream(ctx, srv.base, token, id, func(e testkit.Frame) bool {
				if e.Data["type"] == "output" {
					once()
				}
				last = e.Data
				return !e.Terminal()
			})
			once()
			terminals <- last
		}()
		<-started // the turn is running and its stream is open
	}

	is.NoErr(srv.cmd.Process.Signal(syscall.SIGTERM)) // graceful stop
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()
	select {
	case err := <-exited:
		is.NoErr(err) // the server exits cleanly
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	got := map[string]map[string]any{}
	for range 2 {
		e := <-terminals
		got[fmt.Sprint(e["type"])] = e
	}
	is.Equal(got["exit"]["code"], 0.0)                                                    // the short turn finished inside the grace period
	is.Equal(got["error"]["message"], "Session failed: server shut down during the turn") // the long one was cut, with the reason

	srv2 := startServer(t, dataDir)
	code, s := srv2.call("GET", "/sessions/"+long, token, nil)
	is.Equal(code, 200)             // still there after a restart
	is.Equal(s["status"], "failed") // and failed
	code, s = srv2.call("GET", "/sessions/"+short, token, nil)
	is.Equal(code, 200)                // the finished one
	is.Equal(s["status"], "completed") // completed
}

// TestServeFakeModelQuickstart runs the quickstart with runtime claude and
// no model key against `aod serve --fake-model`: the real Claude Code CLI
// (installed from npm into the shared test cache) talks to the in-process
// fake model API.
func TestServeFakeModelQuickstart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--fake-model", "--runtime-dir", apitest.RuntimeDir())
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "quick")
	is.NoErr(err) // token
	token := lastLine(out)
	code, agent := srv.call("POST", "/agents", token, map[string]any{"name": "hello", "model": "anthropic/claude-sonnet-4-6", "runtime": "claude"})
	is.Equal(code, 201) // the quickstart's agent
	code, sess := srv.call("POST", "/sessions", token, map[string]any{"agent_id": agent["id"], "prompt": "Say hello", "timeout": 120})
	is.Equal(code, 202) // accepted with no ANTHROPIC_API_KEY anywhere
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var output strings.Builder
	var last map[string]any
	is.NoErr(readStream(ctx, srv.base, token, sess["id"].(string), func(e testkit.Frame) bool {
		if e.Data["type"] == "output" {
			output.WriteString(e.Data["data"].(string))
		}
		last = e.Data
		return !e.Terminal()
	})) // stream
	is.Equal(last["type"], "exit")                                         // the turn ended
	is.Equal(last["code"], 0.0)                                            // successfully
	is.True(strings.Contains(output.String(), "fake reply to: Say hello")) // Claude Code printed the fake model's answer
}

// With --log-format json every log line is one JSON object; an API
// request's line names the caller's user id and never their token.
func TestJSONLogs(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--log-format", "json", "--sandbox", "none")
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "logger")
	is.NoErr(err)
	token := lastLine(out)
	status, _ := srv.call("GET", "/agents", token, nil)
	is.Equal(status, http.StatusOK) // an authenticated request
	var userLine map[string]any
	testkit.Eventually(10*time.Second, func() bool {
		for _, line := range strings.Split(strings.TrimSpace(srv.logText()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request" && m["path"] == "/agents" {
				userLine = m
				return true
			}
		}
		return false
	})
	is.True(userLine != nil)                                   // the request's line is JSON
	is.True(userLine["user"] != nil && userLine["user"] != "") // naming the user
	for _, line := range strings.Split(strings.TrimSpace(srv.logText()), "\n") {
		var m map[string]any
		is.NoErr(json.Unmarshal([]byte(line), &m)) // every line is a JSON object (see line)
	}
	is.True(!strings.Contains(srv.logText(), token)) // never the token
}

// --metrics-listen serves Prometheus metrics on a listener of their own:
// sessions by status, the queue, running sprites, open streams, events
// appended, turn and provisioning durations, webhook deliveries.
func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	free, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	addr := free.Addr().String()
	free.Close()
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(hook.Close)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--metrics-listen", addr, "--sandbox", "none", "--egress-allow", "127.0.0.1")
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "metrics")
	is.NoErr(err)
	token := lastLine(out)
	status, _ := srv.call("POST", "/webhooks", token, map[string]any{"url": hook.URL, "events": []string{"session.completed"}})
	is.Equal(status, http.StatusCreated) // a webhook to count deliveries of
	agent := srv.api.ShellAgent(token)
	id := srv.api.StartSession(token, apitest.SessionBody(agent, "echo measured"))
	srv.api.WaitStatus(token, id, "completed")
	var body string
	ok := testkit.Eventually(10*time.Second, func() bool {
		res, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body = string(b)
		return strings.Contains(body, `aod_turn_duration_seconds_count{outcome="completed"} 1`) &&
			strings.Contains(body, `aod_webhook_attempts_total{result="succeeded"} 1`)
	})
	is.True(ok) // a completed turn's duration and the webhook's delivery are recorded (see body)
	for _, want := range []string{
		`aod_sessions{status="completed"} 1`,
		`aod_sessions{status="running"} 0`,
		"aod_queue_depth 0",
		"aod_running_sprites 0",
		"aod_open_streams 0",
		`aod_provisioning_duration_seconds_count{outcome="ok"} 1`,
		`aod_webhook_deliveries{status="succeeded"} 1`,
		`aod_webhook_deliveries{status="pending"} 0`,
		"go_goroutines ",
	} {
		is.True(strings.Contains(body, want)) // each metric (see want)
	}
	is.True(regexp.MustCompile(`(?m)^aod_events_appended_total [1-9]`).MatchString(body)) // events appended
	res, err := http.Get(srv.base + "/metrics")
	is.NoErr(err)
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusNotFound) // not on the public API's listener
}

// cutOnce is a TCP proxy to addr that cuts the first connection asking
// for an event stream after limit bytes of the answer; everything else
// passes whole.
func cutOnce(t *testing.T, addr string, limit int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var cut atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, _ := br.Peek(64)
				first := bytes.Contains(line, []byte("/stream")) && cut.CompareAndSwap(false, true)
				up, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, br)
				if first {
					io.CopyN(c, up, limit)
					return // cut
				}
				io.Copy(c, up)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// aod run against a real server: it streams the session's output, shows
// stages on stderr, resumes after a dropped connection without losing or
// repeating anything, and exits with the turn's exit code.
func TestClientRun(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--sandbox", "none")
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "runner")
	is.NoErr(err)
	token := lastLine(out)
	srv.api.MustCreate("/agents", token, map[string]any{"name": "sh", "runtime": "shell", "model": "local/shell"})

	var want strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	run := func(url string, args ...string) (string, string, int) {
		cmd := exec.Command(aodBinary(t), append([]string{"run", "--agent", "sh"}, args...)...)
		cmd.Env = append(os.Environ(), "AOD_API_URL="+url, "AOD_API_TOKEN="+token)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.String(), stderr.String(), code
	}
	stdout, stderr, code := run(srv.base, "for i in $(seq 1 30); do echo line $i; sleep 0.02; done; exit 3")
	is.Equal(code, 3)                                        // the turn's exit code
	is.Equal(stdout, want.String())                          // its output
	is.True(strings.Contains(stderr, "create_sprite: done")) // stages on stderr (see stderr)

	proxy := cutOnce(t, strings.TrimPrefix(srv.base, "http://"), 1200)
	stdout, stderr, code = run(proxy, "for i in $(seq 1 30); do echo line $i; sleep 0.02; done")
	is.Equal(code, 0)                                       // a clean exit
	is.True(strings.Contains(stderr, "stream interrupted")) // the connection was cut (see stderr)
	is.Equal(stdout, want.String())                         // and the output came whole, once

	_, stderr, code = run(srv.base+"/nowhere-", "true")
	is.True(code != 0) // a wrong server is an error
	_ = stderr

	client := func(args ...string) (string, error) {
		cmd := exec.Command(aodBinary(t), args...)
		cmd.Env = append(os.Environ(), "AOD_API_URL="+srv.base, "AOD_API_TOKEN="+token)
		b, err := cmd.Output()
		return string(b), err
	}
	out, err = client("agents", "create", "helper", "--runtime", "shell", "--model", "local/shell")
	is.NoErr(err)                                      // aod agents create
	is.True(strings.Contains(out, `"name": "helper"`)) // prints the agent
	out, err = client("agents", "get", "helper")
	is.NoErr(err) // by name
	is.True(strings.Contains(out, `"runtime": "shell"`))
	out, err = client("sessions", "list")
	is.NoErr(err)                                // aod sessions list
	is.True(strings.Count(out, `"status"`) >= 2) // the two runs' sessions
}

// Webhook deliveries are stored before they are sent: one that an
// endpoint refused before the server stopped is retried by the next
// server on the same data dir.
func TestWebhookRetriesAcrossRestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var up atomic.Bool
	var got atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		got.Add(1)
	}))
	t.Cleanup(hook.Close)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, dataDir, "--sandbox", "none", "--egress-allow", "127.0.0.1")
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "hooks")
	is.NoErr(err)
	token := lastLine(out)
	status, _ := srv.call("POST", "/webhooks", token, map[string]any{"url": hook.URL, "events": []string{"session.completed"}})
	is.Equal(status, http.StatusCreated)
	id := srv.api.StartSession(token, apitest.SessionBody(srv.api.ShellAgent(token), "true"))
	srv.api.WaitStatus(token, id, "completed")
	time.Sleep(time.Second) // the first attempt is refused
	is.Equal(got.Load(), int32(0))
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	up.Store(true)
	startServer(t, dataDir, "--sandbox", "none", "--egress-allow", "127.0.0.1")
	is.True(testkit.Eventually(30*time.Second, func() bool { return got.Load() == 1 })) // the next server delivers it
}

// On Sprites a restart does not end a running turn: the command runs on
// in its Sprite while aod is down, and the next server takes it up, its
// output whole and in order, each line once, then its exit.
func TestSpritesTurnSurvivesRestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	spritesfake.RequireExec(t)
	fake := spritesfake.New(t, spritesfake.Options{})
	dataDir := filepath.Join(t.TempDir(), "data")
	flags := []string{"--sandbox", "sprites", "--sprites-url", fake.URL(), "--sprites-token", fake.Token(), "--shutdown-grace", "100ms"}
	srv := startServer(t, dataDir, flags...)
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "restart")
	is.NoErr(err)
	token := lastLine(out)
	id := srv.api.StartSession(token, apitest.SessionBody(srv.api.ShellAgent(token), "for i in $(seq 1 60); do echo line $i; sleep 0.05; done"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	is.NoErr(readStream(ctx, srv.base, token, id, func(e testkit.Frame) bool {
		return !strings.Contains(fmt.Sprint(e.Data["data"]), "line 10\n")
	})) // the turn is under way
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
	is.True(strings.Contains(srv.logText(), "runs on in its sprite")) // the server let go of the command, not killed it (see the log)

	next := startServer(t, dataDir, flags...)
	s := next.api.WaitStatus(token, id, "completed", "failed")
	is.Equal(s["status"], "completed") // the next server saw the turn to its end
	is.Equal(s["exit_code"], 0.0)      // with the command's exit
	var want strings.Builder
	for i := 1; i <= 60; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	is.Equal(next.api.Finish(token, id).Output("stdout", 1), want.String()) // every line once, in order: no gap, no duplicate
}

// On Sprites a crash (kill -9) of aod loses the running turn, as on one
// machine: the next server fails the session and kills the command, which
// would otherwise run on in its Sprite with nobody reading it.
func TestSpritesCrashKillsTheLostCommand(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	spritesfake.RequireExec(t)
	fake := spritesfake.New(t, spritesfake.Options{})
	dataDir := filepath.Join(t.TempDir(), "data")
	flags := []string{"--sandbox", "sprites", "--sprites-url", fake.URL(), "--sprites-token", fake.Token()}
	srv := startServer(t, dataDir, flags...)
	out, err := cli(t, nil, "--data-dir", dataDir, "token", "create", "--user", "crash")
	is.NoErr(err)
	token := lastLine(out)
	id := srv.api.StartSession(token, apitest.SessionBody(srv.api.ShellAgent(token), "echo started; sleep 300"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	is.NoErr(readStream(ctx, srv.base, token, id, func(e testkit.Frame) bool { return e.Type() != "output" })) // the turn is under way
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	running := func() bool {
		for _, e := range fake.ExecSessions(apitest.SpritesPrefix + id) {
			if e.Active {
				return true
			}
		}
		return false
	}
	is.True(running()) // the command runs on without aod

	next := startServer(t, dataDir, flags...)
	s := next.api.WaitStatus(token, id, "completed", "failed")
	is.Equal(s["status"], "failed")                                                // the next server fails the lost turn
	is.True(testkit.Eventually(10*time.Second, func() bool { return !running() })) // and kills its command
}
