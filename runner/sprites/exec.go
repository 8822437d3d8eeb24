package sprites

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Stream ids: the first byte of every binary message (non-TTY mode).
const (
	streamStdin  = 0
	streamStdout = 1
	streamStderr = 2
	streamExit   = 3
	streamEOF    = 4
)

var (
	// ErrDisconnected is wrapped by Exec.Wait's error when the socket
	// dropped (or went silent for Config.DeadAfter) before the exit
	// frame. The command may still run: Attach to its SessionID.
	ErrDisconnected = errors.New("sprites: exec socket dropped before the command exited")
	// ErrClosed is Wait's error after Exec.Close.
	ErrClosed = errors.New("sprites: exec closed")
	// ErrFrameTooLarge is Wait's error when the server sent a message
	// over MaxFrameSize. Attaching again would replay it, so it is not
	// ErrDisconnected.
	ErrFrameTooLarge = errors.New("sprites: exec message larger than MaxFrameSize")
)

// ExecOptions describe a command to run in a sprite.
type ExecOptions struct {
	Argv []string
	// Dir is the working directory; "" is the server's default.
	Dir string
	// Env, when non-nil and not empty, replaces the sprite's default
	// environment (KEY=value). An empty Env cannot be expressed on the
	// wire and means the default environment.
	Env []string
	// Stdin: true lets the caller write stdin through Exec.Stdin (and
	// close it); false sends the EOF frame at once.
	Stdin bool
	// Detachable keeps the session attachable after the socket drops.
	Detachable bool
	// MaxRunAfterDisconnect is how long the command may run with no
	// client attached (server default 10s for non-TTY); 0 leaves the
	// default.
	MaxRunAfterDisconnect time.Duration
}

// Exec is one command's WebSocket session. Wait pumps its output; Stdin,
// Signal and Close may be called from other goroutines meanwhile.
type Exec struct {
	c      *Client
	sprite string
	conn   *websocket.Conn
	caps   []string

	mu sync.Mutex
	id int64 // -1 until session_info arrives

	// msgs carries the socket's messages from the reader goroutine;
	// pending holds those Exec read while waiting for session_info.
	msgs    chan message
	pending []message

	ctx    context.Context // ends with Close; bounds writes
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	// Keepalive: waitingSince is when the reader began waiting on the
	// socket (0 while it is not, e.g. blocked on a slow output writer),
	// lastPong when the last pong came, in Unix nanoseconds.
	waitingSince atomic.Int64
	lastPong     *atomic.Int64
	dead         atomic.Bool
	closing      atomic.Bool
	exited       atomic.Bool
	waited       atomic.Bool

	stdin *stdinWriter
}

type message struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

// Exec starts argv in sprite name. It returns once the server upgraded
// the socket and sent its session_info (or after Config.SessionInfoWait
// without one); ctx bounds only that. The command then runs until it
// exits or, once the socket is gone, for its MaxRunAfterDisconnect. The
// handshake is retried only when the server answered 5xx or refused the
// connection: then the command cannot have started.
func (c *Client) Exec(ctx context.Context, name string, o ExecOptions) (*Exec, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if len(o.Argv) == 0 || o.Argv[0] == "" {
		return nil, errors.New("sprites: exec: empty command")
	}
	q := url.Values{}
	for _, a := range o.Argv {
		q.Add("cmd", a)
	}
	q.Set("path", o.Argv[0])
	q.Set("stdin", strconv.FormatBool(o.Stdin))
	for _, kv := range o.Env {
		q.Add("env", kv)
	}
	if o.Dir != "" {
		q.Set("dir", o.Dir)
	}
	if o.Detachable {
		q.Set("detachable", "true")
	}
	if o.MaxRunAfterDisconnect > 0 {
		q.Set("max_run_after_disconnect", o.MaxRunAfterDisconnect.String())
	}
	conn, resp, pong, err := c.dial(ctx, spritePath(name, "/exec"), q)
	if err != nil {
		return nil, err
	}
	return c.startExec(ctx, name, conn, resp, pong, !o.Stdin)
}

// Attach reconnects to exec session id of sprite name. The server sends
// session_info and then replays the session's output from its start, so
// the caller skips what it has already seen. On a 404 the legacy form
// (/exec?id=) is tried before giving up.
func (c *Client) Attach(ctx context.Context, name string, sessionID int64) (*Exec, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	id := strconv.FormatInt(sessionID, 10)
	conn, resp, pong, err := c.dial(ctx, spritePath(name, "/exec/"+url.PathEscape(id)), nil)
	if IsNotFound(err) {
		c.log.Debug("sprites: attach: trying the legacy path", "sprite", name, "session", sessionID)
		var lerr error
		conn, resp, pong, lerr = c.dial(ctx, spritePath(name, "/exec"), url.Values{"id": {id}})
		var e *APIError
		if lerr != nil && errors.As(lerr, &e) && e.Status < 500 {
			// A server that does not know the legacy form either: the
			// first answer (the session is gone) is the one that matters.
			return nil, err
		}
		err = lerr
	}
	if err != nil {
		return nil, err
	}
	e, err := c.startExec(ctx, name, conn, resp, pong, false)
	if err == nil {
		e.mu.Lock()
		if e.id < 0 {
			e.id = sessionID
		}
		e.mu.Unlock()
	}
	return e, err
}

// dial opens the exec socket at path, retrying answers that prove the
// command did not start.
func (c *Client) dial(ctx context.Context, path string, q url.Values) (*websocket.Conn, *http.Response, *atomic.Int64, error) {
	for n := 1; ; n++ {
		pong := new(atomic.Int64)
		conn, resp, err := c.dialOnce(ctx, path, q, pong)
		if err == nil {
			return conn, resp, pong, nil
		}
		delay, ok := c.retryable(ctx, retryHandshake, n, err)
		if !ok {
			return nil, nil, nil, err
		}
		c.log.Debug("sprites: retrying exec handshake", "path", path, "attempt", n, "delay", delay, "err", err)
		if err := sleep(ctx, delay); err != nil {
			return nil, nil, nil, err
		}
	}
}

func (c *Client) dialOnce(ctx context.Context, path string, q url.Values, pong *atomic.Int64) (*websocket.Conn, *http.Response, error) {
	u, err := c.endpoint(path, q)
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{}
	c.authorize(h)
	dctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	op := "GET " + path
	conn, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{
		HTTPClient: c.http,
		HTTPHeader: h,
		OnPongReceived: func(context.Context, []byte) {
			pong.Store(time.Now().UnixNano())
		},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode >= 400 {
			return nil, nil, apiError(op, resp, false)
		}
		if ctx.Err() == nil && dctx.Err() != nil {
			err = fmt.Errorf("%w (no upgrade within %s)", err, c.cfg.CallTimeout)
		}
		return nil, nil, fmt.Errorf("sprites: %s: %w", op, err)
	}
	return conn, resp, nil
}

// startExec wraps an open socket: starts the reader and keepalive, sends
// the EOF frame when there is no stdin, and waits for session_info.
func (c *Client) startExec(ctx context.Context, name string, conn *websocket.Conn, resp *http.Response, pong *atomic.Int64, eof bool) (*Exec, error) {
	conn.SetReadLimit(MaxFrameSize)
	lctx, cancel := context.WithCancel(context.Background())
	e := &Exec{
		c: c, sprite: name, conn: conn, id: -1,
		caps:     parseCaps(resp.Header.Values("X-Sprite-Capabilities")),
		msgs:     make(chan message, 4),
		ctx:      lctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		lastPong: pong,
	}
	e.stdin = &stdinWriter{e: e, closed: eof}
	e.wg.Add(2)
	go e.readLoop()
	go e.keepalive()
	if eof {
		if err := e.write(ctx, []byte{streamEOF}); err != nil {
			e.Close()
			return nil, fmt.Errorf("sprites: exec: sending stdin EOF: %w", err)
		}
	}
	timer := time.NewTimer(c.cfg.SessionInfoWait)
	defer timer.Stop()
	for {
		select {
		case m := <-e.msgs:
			if m.err != nil {
				err := e.readErr(m.err)
				e.Close()
				return nil, fmt.Errorf("sprites: exec: before session_info: %w", err)
			}
			e.pending = append(e.pending, m)
			if m.typ == websocket.MessageText && e.handleText(m.data) {
				return e, nil
			}
			if m.typ == websocket.MessageBinary {
				// Output first: this server sends no session_info up front.
				return e, nil
			}
		case <-timer.C:
			c.log.Debug("sprites: exec: no session_info", "sprite", name, "waited", c.cfg.SessionInfoWait)
			return e, nil
		case <-ctx.Done():
			e.Close()
			return nil, ctx.Err()
		}
	}
}

func parseCaps(vals []string) []string {
	var caps []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				caps = append(caps, strings.ToLower(s))
			}
		}
	}
	return caps
}

// SessionID is the server's id of this exec session (for Attach, Kill and
// ListExec), or -1 while the server has not said.
func (e *Exec) SessionID() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.id
}

// Capabilities are what the server listed in X-Sprite-Capabilities
// (lower case), such as "signal".
func (e *Exec) Capabilities() []string {
	return append([]string(nil), e.caps...)
}

func (e *Exec) hasCap(c string) bool {
	for _, x := range e.caps {
		if x == c {
			return true
		}
	}
	return false
}

// handleText reads a JSON message and reports whether it was
// session_info. Other kinds (port notifications) are ignored.
func (e *Exec) handleText(data []byte) bool {
	var m struct {
		Type      string   `json:"type"`
		SessionID *flexInt `json:"session_id"`
	}
	if json.Unmarshal(data, &m) != nil {
		e.c.log.Debug("sprites: exec: unreadable text message", "len", len(data))
		return false
	}
	if m.Type != "session_info" {
		return false
	}
	if m.SessionID != nil {
		e.mu.Lock()
		e.id = int64(*m.SessionID)
		e.mu.Unlock()
	}
	return true
}

// readLoop hands the socket's messages to msgs until the first error.
func (e *Exec) readLoop() {
	defer e.wg.Done()
	for {
		e.waitingSince.Store(time.Now().UnixNano())
		typ, data, err := e.conn.Read(e.ctx)
		e.waitingSince.Store(0)
		select {
		case e.msgs <- message{typ: typ, data: data, err: err}:
		case <-e.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// keepalive pings every PingInterval and drops the socket when the
// reader has waited DeadAfter with neither a message nor a pong.
func (e *Exec) keepalive() {
	defer e.wg.Done()
	cfg := e.c.cfg
	check := min(cfg.PingInterval, cfg.DeadAfter/3)
	if check <= 0 {
		check = cfg.PingInterval
	}
	t := time.NewTicker(check)
	defer t.Stop()
	var lastPing time.Time
	var pinging atomic.Bool
	for {
		select {
		case <-e.done:
			return
		case now := <-t.C:
			if since := e.waitingSince.Load(); since != 0 {
				quiet := max(since, e.lastPong.Load())
				if now.UnixNano()-quiet > int64(cfg.DeadAfter) {
					e.c.log.Debug("sprites: exec: socket silent, dropping it", "sprite", e.sprite, "after", cfg.DeadAfter)
					e.dead.Store(true)
					e.conn.CloseNow()
					return
				}
			}
			if now.Sub(lastPing) >= cfg.PingInterval && pinging.CompareAndSwap(false, true) {
				lastPing = now
				e.wg.Add(1)
				go func() {
					defer e.wg.Done()
					defer pinging.Store(false)
					pctx, cancel := context.WithTimeout(e.ctx, cfg.DeadAfter)
					defer cancel()
					// The answer is seen by OnPongReceived; a ping that
					// is not answered is judged by the silence check.
					_ = e.conn.Ping(pctx)
				}()
			}
		}
	}
}

// write sends one message, bounded by ctx, CallTimeout and Close. A
// write that times out closes the socket (the library cannot abandon a
// half-written frame).
func (e *Exec) write(ctx context.Context, frame []byte) error {
	wctx, cancel := context.WithTimeout(e.ctx, e.c.cfg.CallTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return e.conn.Write(wctx, websocket.MessageBinary, frame)
}

// Stdin writes the command's standard input, in frames of at most 32 KiB;
// Close sends the EOF frame. Without ExecOptions.Stdin writes fail (the
// EOF frame went at once). After Attach writes are sent; the server
// passes them on only while the session's stdin is open.
func (e *Exec) Stdin() io.WriteCloser { return e.stdin }

type stdinWriter struct {
	e      *Exec
	mu     sync.Mutex
	closed bool
}

func (w *stdinWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fmt.Errorf("sprites: stdin: %w", io.ErrClosedPipe)
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), stdinPayload)
		frame := make([]byte, 1+k)
		frame[0] = streamStdin
		copy(frame[1:], p[:k])
		if err := w.e.writeStream(frame); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (w *stdinWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.e.writeStream([]byte{streamEOF})
}

// writeStream writes a stdin frame; it has no deadline of its own (a
// command that reads slowly holds it back) but ends with Close.
func (e *Exec) writeStream(frame []byte) error {
	err := e.conn.Write(e.ctx, websocket.MessageBinary, frame)
	if err != nil && e.closing.Load() {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("sprites: stdin: %w", err)
	}
	return nil
}

// Wait copies stdout and stderr frames to the writers (nil discards), in
// writes of at most 32 KiB, until the exit frame, then closes the socket
// at once and returns the exit code (0-255). A writer may block: reading
// from the socket waits for it. A socket that drops before the exit frame
// gives an error satisfying errors.Is(err, ErrDisconnected). Wait may be
// called once.
func (e *Exec) Wait(stdout, stderr io.Writer) (code int, err error) {
	if !e.waited.CompareAndSwap(false, true) {
		return -1, errors.New("sprites: exec: Wait called twice")
	}
	defer e.Close()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	pending := e.pending
	e.pending = nil
	for {
		var m message
		if len(pending) > 0 {
			m, pending = pending[0], pending[1:]
		} else {
			select {
			case m = <-e.msgs:
			case <-e.done:
				return -1, ErrClosed
			}
		}
		if m.err != nil {
			return -1, e.readErr(m.err)
		}
		if m.typ == websocket.MessageText {
			e.handleText(m.data)
			continue
		}
		if len(m.data) == 0 {
			continue
		}
		switch m.data[0] {
		case streamStdout:
			if err := writeChunks(stdout, m.data[1:]); err != nil {
				return -1, fmt.Errorf("sprites: exec: writing stdout: %w", err)
			}
		case streamStderr:
			if err := writeChunks(stderr, m.data[1:]); err != nil {
				return -1, fmt.Errorf("sprites: exec: writing stderr: %w", err)
			}
		case streamExit:
			if len(m.data) < 2 {
				return -1, errors.New("sprites: exec: exit frame without a code")
			}
			e.exited.Store(true)
			return int(m.data[1]), nil
		default:
			// Stream 5 (SSH agent) and unknown ids carry nothing for us.
		}
	}
}

func writeChunks(w io.Writer, p []byte) error {
	for len(p) > 0 {
		k := min(len(p), outputChunk)
		if _, err := w.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// readErr turns the reader's error into Wait's.
func (e *Exec) readErr(err error) error {
	switch {
	case e.closing.Load():
		return ErrClosed
	case errors.Is(err, websocket.ErrMessageTooBig):
		return fmt.Errorf("%w: %w", ErrFrameTooLarge, err)
	case e.dead.Load():
		return fmt.Errorf("%w: no message or pong for %s", ErrDisconnected, e.c.cfg.DeadAfter)
	}
	if s := websocket.CloseStatus(err); s != -1 {
		return fmt.Errorf("%w: server closed the socket (%d)", ErrDisconnected, s)
	}
	return fmt.Errorf("%w: %w", ErrDisconnected, err)
}

// Signal sends sig ("TERM", "SIGTERM", "INT", "KILL"…) to the command:
// in band when the server listed the "signal" capability and the socket
// is up, otherwise through the kill endpoint (which needs the session
// id). After the exit frame it does nothing.
func (e *Exec) Signal(ctx context.Context, sig string) error {
	bare := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(sig)), "SIG")
	if bare == "" {
		return errors.New("sprites: signal: empty name")
	}
	if e.exited.Load() {
		return nil
	}
	if e.hasCap("signal") && !e.closing.Load() {
		msg, _ := json.Marshal(map[string]string{"type": "signal", "signal": bare})
		wctx, cancel := context.WithTimeout(e.ctx, e.c.cfg.CallTimeout)
		err := e.conn.Write(wctx, websocket.MessageText, msg)
		cancel()
		if err == nil {
			return nil
		}
		e.c.log.Debug("sprites: in-band signal failed, using the kill endpoint", "sprite", e.sprite, "err", err)
	}
	id := e.SessionID()
	if id < 0 {
		return errors.New("sprites: signal: the server gave no session id")
	}
	return e.c.kill(ctx, e.sprite, id, "SIG"+bare, 0, true)
}

// Close drops the socket (without waiting for the server's close) and
// ends Wait with ErrClosed. The command goes on for its
// MaxRunAfterDisconnect unless it already exited.
func (e *Exec) Close() error {
	e.once.Do(func() {
		if !e.exited.Load() {
			e.closing.Store(true)
		}
		close(e.done)
		e.cancel()
		e.conn.CloseNow()
	})
	e.wg.Wait()
	return nil
}

// ExecSession is one entry of ListExec.
type ExecSession struct {
	ID           int64
	Command      string
	Workdir      string
	Active       bool
	TTY          bool
	Created      time.Time
	LastActivity time.Time
}

// ListExec lists the exec sessions of sprite name.
func (c *Client) ListExec(ctx context.Context, name string) ([]ExecSession, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	var out struct {
		Sessions []struct {
			ID           flexInt         `json:"id"`
			Command      json.RawMessage `json:"command"`
			Workdir      string          `json:"workdir"`
			Created      flexTime        `json:"created"`
			IsActive     bool            `json:"is_active"`
			TTY          bool            `json:"tty"`
			LastActivity flexTime        `json:"last_activity"`
		} `json:"sessions"`
	}
	err := c.doJSON(ctx, &request{method: http.MethodGet, path: spritePath(name, "/exec"), retry: retrySafe}, &out)
	if err != nil {
		return nil, err
	}
	list := make([]ExecSession, 0, len(out.Sessions))
	for _, s := range out.Sessions {
		list = append(list, ExecSession{ID: int64(s.ID), Command: commandString(s.Command), Workdir: s.Workdir,
			Active: s.IsActive, TTY: s.TTY, Created: time.Time(s.Created), LastActivity: time.Time(s.LastActivity)})
	}
	return list, nil
}

// commandString reads a command given as a string or an argv array.
func commandString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var argv []string
	if json.Unmarshal(raw, &argv) == nil {
		return strings.Join(argv, " ")
	}
	return ""
}

// Kill signals exec session id of sprite name through the HTTP endpoint
// and follows its progress until the command exited or was killed. signal
// "" is the server's default (SIGTERM); timeout is how long the server
// waits before it escalates to SIGKILL (0: its default). A session that
// already ended (410 Gone) is success.
func (c *Client) Kill(ctx context.Context, name string, id int64, signal string, timeout time.Duration) error {
	return c.kill(ctx, name, id, signal, timeout, false)
}

func (c *Client) kill(ctx context.Context, name string, id int64, signal string, timeout time.Duration, sentOnly bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	q := url.Values{}
	if signal != "" {
		if !strings.HasPrefix(strings.ToUpper(signal), "SIG") {
			signal = "SIG" + signal
		}
		q.Set("signal", strings.ToUpper(signal))
	}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	r := &request{method: http.MethodPost, path: spritePath(name, "/exec/"+strconv.FormatInt(id, 10)+"/kill"),
		query: q, accept: "application/x-ndjson", retry: retryRefused, timeout: c.cfg.CallTimeout + timeout}
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		var e *APIError
		if errors.As(err, &e) && e.Status == http.StatusGone {
			return nil
		}
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var ev struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			return fmt.Errorf("sprites: %s: bad progress line: %w", r.op(), err)
		}
		switch ev.Type {
		case "complete", "exited", "killed":
			return nil
		case "error":
			return fmt.Errorf("sprites: %s: %s", r.op(), ev.Message)
		case "signal":
			if sentOnly {
				return nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("sprites: %s: reading progress: %w", r.op(), err)
	}
	// The stream ended without a final event: the server has nothing
	// more to say, and answered 2xx.
	return nil
}
