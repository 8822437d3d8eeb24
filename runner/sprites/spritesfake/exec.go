package spritesfake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/coder/websocket"
	"golang.org/x/sys/unix"
)

// Exec over WebSocket (§6.2), non-TTY only.
//
// A command runs in three processes: bwrap on the host, leader of its
// own process group; its child, bwrap again as pid 1 of a new pid
// namespace, which --new-session makes a session and group leader; and
// the command, a child of that pid 1 and in its group. Signals from a
// client go to that group, so they reach the command's whole tree but not
// the outer bwrap, which then exits with the command's status (128+n when
// signal n ended it). A forced kill (delete, Close, the end of
// max_run_after_disconnect, the kill endpoint's timeout) SIGKILLs the
// namespace's pid 1, and with it everything in the namespace.

// maxPayload keeps a frame (stream byte + payload) within 32 KiB, the
// default read limit of common WebSocket libraries.
const maxPayload = 32<<10 - 1

// defaultMaxRunAfterDisconnect is the service's non-TTY default.
const defaultMaxRunAfterDisconnect = 10 * time.Second

// defaultEnv is a sprite's environment when exec gives no env=; the
// sprite's create-time environment is added to it.
var defaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/home/sprite", "USER=sprite", "LOGNAME=sprite", "SHELL=/bin/bash", "LANG=C.UTF-8",
}

// systemDirs are the host's directories a command sees, read-only (or as
// the same links when they are links, as /bin is on a merged-/usr host).
var systemDirs = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt"}

var bwrapProbe struct {
	sync.Mutex
	done map[string]error
}

// bwrapPath is the bubblewrap binary the fake uses, or an error saying
// why there is none that works.
func bwrapPath(bin string) (string, error) {
	if bin == "" {
		bin = "bwrap"
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("bubblewrap (%s) is not installed: %w", bin, err)
	}
	bwrapProbe.Lock()
	defer bwrapProbe.Unlock()
	if err, ok := bwrapProbe.done[p]; ok {
		return p, err
	}
	// A run of `true` in the same sandbox as a sprite's commands.
	dir, err := os.MkdirTemp("", "spritesfake-probe-")
	if err == nil {
		defer os.RemoveAll(dir)
		if err = makeSpriteDir(filepath.Join(dir, "s")); err == nil {
			var out []byte
			out, err = exec.Command(p, append(sandboxArgs(filepath.Join(dir, "s"), "/"), "true")...).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("bubblewrap (%s) does not work here: %v: %s", p, err, strings.TrimSpace(string(out)))
			}
		}
	}
	if bwrapProbe.done == nil {
		bwrapProbe.done = map[string]error{}
	}
	bwrapProbe.done[p] = err
	return p, err
}

// RequireExec ends the test (testkit.CannotRun, AOD_REQUIRE_BWRAP) when
// the fake cannot run commands here. Tests that exec call it first; an
// exec without bubblewrap fails the test.
func RequireExec(tb testing.TB) {
	tb.Helper()
	if _, err := bwrapPath(""); err != nil {
		testkit.CannotRun(tb, "AOD_REQUIRE_BWRAP", "spritesfake exec: %v", err)
	}
}

// sandboxArgs are bwrap's arguments for a command of the sprite whose
// directory is root, run in dir, up to and including "--".
func sandboxArgs(root, dir string) []string {
	args := []string{"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sprite", "--die-with-parent", "--new-session"}
	for _, d := range systemDirs {
		host := "/" + d
		fi, err := os.Lstat(host)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(host); err == nil {
				args = append(args, "--symlink", target, host)
			}
		case fi.IsDir():
			args = append(args, "--ro-bind", host, host)
		}
	}
	args = append(args, "--dev", "/dev", "--proc", "/proc")
	for _, m := range mountPoints {
		args = append(args, "--bind", filepath.Join(root, m), "/"+m)
	}
	return append(args, "--remount-ro", "/", "--chdir", dir, "--")
}

// checkMountPoints makes sure the sprite's home, workspace and tmp are
// real directories (bwrap binds them from host paths, so a link there
// would bind a host directory).
func checkMountPoints(root string) error {
	for _, m := range mountPoints {
		p := filepath.Join(root, m)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			err = os.Mkdir(p, 0o755)
			if err == nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
	}
	return nil
}

type stdinMsg struct {
	data []byte
	eof  bool
}

// session is one exec session: a process and all its output.
type session struct {
	f          *Fake
	sp         *sprite
	id         int
	argv       []string
	dir        string
	env        []string
	stdin      bool
	detachable bool
	maxAfter   time.Duration // 0: forever
	created    time.Time
	cmd        *exec.Cmd
	pid        int
	stdinCh    chan stdinMsg
	done       chan struct{} // closed when the process has ended

	mu          sync.Mutex
	frames      [][]byte // kept output frames, stream byte first
	base        int      // index of frames[0] among all frames ever
	size        int
	changed     chan struct{} // closed and replaced at every change
	exited      bool
	code        int
	attached    int
	timer       *time.Timer
	killedAfter bool
	stdinClosed bool
	init        int // pid 1 of the sandbox's pid namespace (host pid), once found
	initFD      int // a pidfd of init, -1 until then
	group       int // the command's process group (host pid), once found
	outBytes    int64
	lastActive  time.Time
}

func (s *session) info() ExecInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := -1
	if s.exited {
		code = s.code
	}
	return ExecInfo{
		ID: s.id, Argv: slices.Clone(s.argv), Dir: s.dir, Env: slices.Clone(s.env), Stdin: s.stdin, Detachable: s.detachable,
		MaxRunAfterDisconnect: s.maxAfter, Created: s.created, PID: s.pid, Active: !s.exited, ExitCode: code,
		Attached: s.attached, KilledAfterDisconnect: s.killedAfter,
	}
}

// streamWriter turns a process's output into frames of one stream.
type streamWriter struct {
	s  *session
	id byte
}

func (w streamWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxPayload)
		w.s.appendFrame(append([]byte{w.id}, rest[:n]...))
		rest = rest[n:]
	}
	return len(p), nil
}

func (s *session) appendFrame(fr []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames = append(s.frames, fr)
	s.size += len(fr)
	for s.size > s.f.opts.ReplayLimit && len(s.frames) > 1 {
		s.size -= len(s.frames[0])
		s.frames[0] = nil
		s.frames = s.frames[1:]
		s.base++
	}
	s.outBytes += int64(len(fr) - 1)
	s.lastActive = time.Now()
	s.notify()
}

// notify wakes whoever waits on changed. Call with s.mu held.
func (s *session) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// snapshot returns the frames from index idx on (skipping what was
// discarded), the next index, the exit state and a channel closed at the
// next change.
func (s *session) snapshot(idx int) ([][]byte, int, bool, int, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx = max(idx, s.base)
	return slices.Clone(s.frames[idx-s.base:]), s.base + len(s.frames), s.exited, s.code, s.changed
}

func (s *session) attach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attached++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// detach forgets a client; when it was the last one of a running process,
// the process gets maxAfter to be re-attached before it is killed.
func (s *session) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attached--
	if s.attached > 0 || s.exited || s.maxAfter == 0 {
		return
	}
	s.timer = time.AfterFunc(s.maxAfter, func() {
		s.mu.Lock()
		expired := s.attached == 0 && !s.exited
		s.killedAfter = s.killedAfter || expired
		s.mu.Unlock()
		if expired {
			s.forceKill()
		}
	})
}

// forceKill SIGKILLs pid 1 of the sandbox's pid namespace, which ends
// everything in it; bwrap then reaps it and exits 137. (Killing bwrap
// first would leave that pid 1 to the host's init to reap.)
func (s *session) forceKill() {
	s.nsInit(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited {
		return
	}
	// Through a pidfd: the pid itself could be reused once bwrap has
	// reaped it.
	if s.initFD >= 0 && unix.PidfdSendSignal(s.initFD, unix.SIGKILL, nil, 0) == nil {
		return
	}
	syscall.Kill(-s.pid, syscall.SIGKILL) // not started yet: bwrap's group
}

// children are the pids /proc lists as pid's children.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// procGroup is the process group of pid, from /proc (0 if gone).
func procGroup(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid pgrp ...; comm may hold anything but ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0
	}
	g, _ := strconv.Atoi(f[2])
	return g
}

// poll calls find until it returns non-zero, the process has exited or
// within has passed.
func (s *session) poll(within time.Duration, find func() int) int {
	deadline := time.Now().Add(within)
	for {
		if v := find(); v != 0 {
			return v
		}
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		if exited || time.Now().After(deadline) {
			return 0
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nsInit finds bwrap's child, pid 1 of the sandbox's pid namespace,
// waiting up to within for it; 0 when there is none.
func (s *session) nsInit(within time.Duration) int {
	return s.poll(within, func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.init == 0 && !s.exited {
			if c := children(s.pid); len(c) > 0 {
				s.init = c[0]
				if fd, err := unix.PidfdOpen(s.init, unix.PIDFD_NONBLOCK); err == nil {
					unix.CloseOnExec(fd)
					s.initFD = fd
				}
			}
		}
		return s.init
	})
}

// commandGroup finds the command's process group, waiting a little for a
// command that is still starting; 0 when there is none. bwrap's
// --new-session makes pid 1 of the namespace a session and group leader,
// and the command (its child) stays in that group. That pid 1 ignores
// signals other than SIGKILL from outside its namespace, so a signal to
// the group reaches the command's tree and leaves the sandbox up.
func (s *session) commandGroup() int {
	init := s.nsInit(2 * time.Second)
	if init == 0 {
		return 0
	}
	return s.poll(2*time.Second, func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.group == 0 {
			if c := children(init); len(c) > 0 {
				s.group = procGroup(c[0])
			}
		}
		return s.group
	})
}

// signal sends sig to the command's process group.
func (s *session) signal(sig syscall.Signal) {
	g := s.commandGroup()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.exited:
	case g > 0:
		syscall.Kill(-g, sig)
	default:
		// No command found (it never started): signal the sandbox as a
		// whole.
		syscall.Kill(-s.pid, sig)
	}
}

// sendStdin passes client stdin on to the process; after EOF or when the
// session has no stdin it drops it.
func (s *session) sendStdin(data []byte, eof bool) {
	s.mu.Lock()
	skip := !s.stdin || s.stdinClosed || s.exited
	if eof {
		s.stdinClosed = true
	}
	s.mu.Unlock()
	if skip {
		return
	}
	select {
	case s.stdinCh <- stdinMsg{data: data, eof: eof}:
	case <-s.done:
	}
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "ABRT": syscall.SIGABRT,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "PIPE": syscall.SIGPIPE,
	"ALRM": syscall.SIGALRM, "TERM": syscall.SIGTERM, "CONT": syscall.SIGCONT, "STOP": syscall.SIGSTOP,
	"TSTP": syscall.SIGTSTP, "WINCH": syscall.SIGWINCH,
}

// parseSignal accepts bare names (TERM), SIG-prefixed ones (SIGTERM) and
// numbers.
func parseSignal(name string) (syscall.Signal, string, bool) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	if sig, ok := signals[n]; ok {
		return sig, "SIG" + n, true
	}
	if num, err := strconv.Atoi(n); err == nil {
		for k, v := range signals {
			if int(v) == num {
				return v, "SIG" + k, true
			}
		}
	}
	return 0, "", false
}

// parseDuration reads a Go duration ("30s") or whole seconds ("30").
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// execOrList serves GET /v1/sprites/{name}/exec: a WebSocket handshake
// starts a command (or, with ?id=, the older servers' attach); a plain GET
// lists sessions.
func (f *Fake) execOrList(w http.ResponseWriter, r *http.Request) {
	switch {
	case !isWebSocket(r):
		f.listSessions(w, r)
	case r.URL.Query().Has("id"):
		f.attachID(w, r, r.URL.Query().Get("id"))
	default:
		f.exec(w, r)
	}
}

func (f *Fake) exec(w http.ResponseWriter, r *http.Request) {
	ok, drop := f.begin(w, "exec")
	if !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	q := r.URL.Query()
	argv := q["cmd"]
	if len(argv) == 0 {
		apiError(w, http.StatusBadRequest, "invalid_request", "cmd is required")
		return
	}
	if p := q.Get("path"); p != "" {
		argv = append([]string{p}, argv[1:]...) // bwrap cannot set argv[0] apart
	}
	if q.Get("tty") == "true" {
		apiError(w, http.StatusBadRequest, "invalid_request", "the fake does not support tty=true")
		return
	}
	s := &session{
		f: f, sp: sp, argv: argv, dir: q.Get("dir"), stdin: q.Get("stdin") == "true", detachable: q.Get("detachable") == "true",
		maxAfter: defaultMaxRunAfterDisconnect, created: time.Now().UTC(), done: make(chan struct{}), changed: make(chan struct{}),
		attached: 1, stdinCh: make(chan stdinMsg, 64), initFD: -1,
	}
	s.lastActive = s.created
	if s.dir == "" {
		s.dir = "/home/sprite"
	}
	if m := q.Get("max_run_after_disconnect"); m != "" {
		d, err := parseDuration(m)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "max_run_after_disconnect: %v", err)
			return
		}
		s.maxAfter = d // 0: forever
	}
	env := slices.Clone(defaultEnv)
	f.mu.Lock()
	for k, v := range sp.environment {
		env = append(env, k+"="+v)
	}
	f.mu.Unlock()
	if q.Has("env") {
		s.env = []string{} // replaces the default environment
		for _, kv := range q["env"] {
			if strings.Contains(kv, "=") {
				s.env = append(s.env, kv)
			}
		}
		env = s.env
	}
	if err := f.start(s, env); err != nil {
		apiError(w, http.StatusInternalServerError, "exec_failed", "spritesfake: %v", err)
		return
	}
	f.serve(w, r, s, drop)
}

// start runs the session's process and registers the session.
func (f *Fake) start(s *session, env []string) error {
	bin, err := bwrapPath(f.opts.Bwrap)
	if err != nil {
		// Loud: a test that execs without RequireExec fails here.
		f.tb.Errorf("spritesfake: cannot run commands (call spritesfake.RequireExec first): %v", err)
		return err
	}
	if err := checkMountPoints(s.sp.dir); err != nil {
		return err
	}
	cmd := exec.Command(bin, append(sandboxArgs(s.sp.dir, s.dir), s.argv...)...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout = streamWriter{s, 1}
	cmd.Stderr = streamWriter{s, 2}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	var stdin interface {
		Write([]byte) (int, error)
		Close() error
	}
	if s.stdin {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	if !f.track() {
		return errors.New("the fake is closing")
	}
	if err := cmd.Start(); err != nil {
		f.wg.Done()
		return err
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	f.mu.Lock()
	f.nextSess++
	s.id = f.nextSess
	s.sp.sessions = append(s.sp.sessions, s)
	s.sp.active++
	s.sp.status, s.sp.statusSet = "running", false
	s.sp.lastRunning, s.sp.updated = s.created, s.created
	orphan := f.closed || s.sp.gone // Close or delete already collected the sessions
	f.mu.Unlock()
	go s.wait()
	if orphan {
		s.forceKill()
	}
	if stdin != nil && f.track() {
		go func() {
			defer f.wg.Done()
			defer stdin.Close()
			for {
				select {
				case m := <-s.stdinCh:
					if m.eof {
						return
					}
					stdin.Write(m.data)
				case <-s.done:
					return
				}
			}
		}()
	}
	return nil
}

// wait records the process's end: its exit code, 128+n when signal n
// ended it (bwrap reports a signalled command that way too).
func (s *session) wait() {
	defer s.f.wg.Done()
	s.cmd.Wait()
	code := 255
	if ws, ok := s.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	}
	// The sprite's status first, so that whoever sees the session ended
	// sees the status that follows from it.
	f := s.f
	f.mu.Lock()
	if s.sp.active--; s.sp.active == 0 && !s.sp.statusSet {
		s.sp.status, s.sp.updated = "warm", time.Now().UTC()
	}
	f.mu.Unlock()
	s.mu.Lock()
	s.exited, s.code = true, code&0xff
	if s.initFD >= 0 {
		unix.Close(s.initFD)
		s.initFD = -1
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.lastActive = time.Now()
	s.notify()
	s.mu.Unlock()
	close(s.done)
}

// serve speaks the exec protocol to one client of s, which is already
// counted as attached: session_info, every kept frame from the start, live
// frames, the exit frame, then the socket stays open CloseDelay (or until
// the client closes it). dropAfter > 0 drops the connection abruptly after
// that many output frames.
func (f *Fake) serve(w http.ResponseWriter, r *http.Request, s *session, dropAfter int) {
	defer s.detach()
	if !f.track() {
		apiError(w, http.StatusServiceUnavailable, "service_unavailable", "the fake is closing")
		return
	}
	defer f.wg.Done()
	if len(f.opts.Capabilities) > 0 {
		w.Header().Set("X-Sprite-Capabilities", strings.Join(f.opts.Capabilities, ","))
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(16 << 20)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.CloseNow() })
	defer stop()

	info, _ := json.Marshal(map[string]any{"type": "session_info", "session_id": s.id, "tty": false})
	if err := c.Write(ctx, websocket.MessageText, info); err != nil {
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		f.readClient(ctx, c, s)
	}()
	if f.pump(ctx, c, s, dropAfter, readerDone) {
		select {
		case <-time.After(f.opts.CloseDelay):
		case <-readerDone:
		case <-ctx.Done():
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	c.CloseNow()
	cancel()
	<-readerDone
}

// pump writes s's frames to c until the exit frame, and reports whether
// it got there.
func (f *Fake) pump(ctx context.Context, c *websocket.Conn, s *session, dropAfter int, readerDone <-chan struct{}) bool {
	idx, sent := 0, 0
	for {
		frames, next, exited, code, changed := s.snapshot(idx)
		for _, fr := range frames {
			if err := c.Write(ctx, websocket.MessageBinary, fr); err != nil {
				return false
			}
			if sent++; dropAfter > 0 && sent >= dropAfter {
				return false // the caller drops the connection
			}
		}
		idx = next
		if len(frames) > 0 {
			continue
		}
		if exited {
			return c.Write(ctx, websocket.MessageBinary, []byte{3, byte(code)}) == nil
		}
		select {
		case <-changed:
		case <-readerDone:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// readClient handles what a client sends: stdin and EOF frames, signal
// messages (when "signal" is advertised), resize (ignored).
func (f *Fake) readClient(ctx context.Context, c *websocket.Conn, s *session) {
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		switch {
		case typ == websocket.MessageBinary && len(data) > 0:
			switch data[0] {
			case 0:
				s.sendStdin(data[1:], false)
			case 4:
				s.sendStdin(nil, true)
			}
		case typ == websocket.MessageText:
			var m struct {
				Type   string `json:"type"`
				Signal string `json:"signal"`
			}
			if json.Unmarshal(data, &m) != nil || m.Type != "signal" || !slices.Contains(f.opts.Capabilities, "signal") {
				continue
			}
			if sig, _, ok := parseSignal(m.Signal); ok {
				s.signal(sig)
			}
		}
	}
}

// session finds a session of sp by its id.
func (f *Fake) session(sp *sprite, id string) *session {
	n, err := strconv.Atoi(id)
	if err != nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range sp.sessions {
		if s.id == n {
			return s
		}
	}
	return nil
}

func (f *Fake) attach(w http.ResponseWriter, r *http.Request) {
	f.attachID(w, r, r.PathValue("id"))
}

func (f *Fake) attachID(w http.ResponseWriter, r *http.Request, id string) {
	ok, drop := f.begin(w, "attach")
	if !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	if !isWebSocket(r) {
		apiError(w, http.StatusBadRequest, "invalid_request", "attach needs a WebSocket upgrade")
		return
	}
	s := f.session(sp, id)
	if s == nil {
		apiError(w, http.StatusNotFound, "not_found", "exec session %q not found", id)
		return
	}
	s.attach()
	f.serve(w, r, s, drop)
}

func (f *Fake) listSessions(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "exec.list"); !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	f.mu.Lock()
	sessions := slices.Clone(sp.sessions)
	f.mu.Unlock()
	out := []map[string]any{}
	for _, s := range sessions {
		s.mu.Lock()
		end := time.Now()
		if s.exited {
			end = s.lastActive
		}
		bps := 0.0
		if secs := end.Sub(s.created).Seconds(); secs > 0 {
			bps = float64(s.outBytes) / secs
		}
		out = append(out, map[string]any{
			"id": s.id, "command": strings.Join(s.argv, " "), "workdir": s.dir,
			"created": s.created.Format(time.RFC3339Nano), "bytes_per_second": bps, "is_active": !s.exited,
			"tty": false, "last_activity": s.lastActive.UTC().Format(time.RFC3339Nano),
		})
		s.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

// kill serves POST .../exec/{id}/kill?signal=SIGTERM&timeout=5s: signal,
// wait up to timeout, then SIGKILL, reporting progress as NDJSON.
func (f *Fake) kill(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "kill"); !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	s := f.session(sp, r.PathValue("id"))
	if s == nil {
		apiError(w, http.StatusNotFound, "not_found", "exec session %q not found", r.PathValue("id"))
		return
	}
	q := r.URL.Query()
	name := q.Get("signal")
	if name == "" {
		name = "SIGTERM"
	}
	sig, sigName, ok := parseSignal(name)
	if !ok {
		apiError(w, http.StatusBadRequest, "invalid_request", "unknown signal %q", name)
		return
	}
	timeout := 5 * time.Second
	if t := q.Get("timeout"); t != "" {
		d, err := parseDuration(t)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", "timeout: %v", err)
			return
		}
		timeout = d
	}
	select {
	case <-s.done:
		apiError(w, http.StatusGone, "session_exited", "exec session %d has already exited", s.id)
		return
	default:
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	line := func(m map[string]any) {
		enc.Encode(m)
		http.NewResponseController(w).Flush()
	}
	pid := s.commandGroup()
	if pid == 0 {
		pid = s.pid
	}
	s.signal(sig)
	line(map[string]any{"type": "signal", "message": fmt.Sprintf("sent %s to process group %d", sigName, pid), "signal": sigName, "pid": pid})
	exitedLine := func() {
		s.mu.Lock()
		code := s.code
		s.mu.Unlock()
		line(map[string]any{"type": "exited", "message": fmt.Sprintf("process exited with code %d", code), "pid": pid, "exit_code": code})
	}
	select {
	case <-s.done:
		exitedLine()
	case <-time.After(timeout):
		line(map[string]any{"type": "timeout", "message": fmt.Sprintf("process still running after %s", timeout), "pid": pid})
		s.forceKill()
		line(map[string]any{"type": "killed", "message": "sent SIGKILL", "signal": "SIGKILL", "pid": pid})
		select {
		case <-s.done:
			exitedLine()
		case <-time.After(10 * time.Second):
			line(map[string]any{"type": "error", "message": "process did not end after SIGKILL", "pid": pid})
			return
		case <-r.Context().Done():
			return
		}
	case <-r.Context().Done():
		return
	case <-f.ctx.Done():
		return
	}
	line(map[string]any{"type": "complete", "message": "done"})
}
