package sse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aod/aod/store"
)

// stream is one client's position in one session's log. Its methods report
// whether streaming goes on; when it doesn't, err says why if that is
// anyone's fault but the client's.
type stream struct {
	h       *Hub
	t       *tail
	w       *watcher
	id      string
	release func()

	after    int64 // read position: every row id seen, shown or not
	last     int64 // id of the last event delivered, for terminal events
	lastTurn int   // so a resume starts again with a turn_start

	staleAt, beatAt time.Time

	out   sink
	buf   []byte // frames not yet written (pooled while sending)
	rows  []row  // what take copied
	slow  bool   // the client took its last write slowly (and at first: a slow start)
	clean bool   // the stream ended as the contract says (a terminal event)
	err   error
}

// maxClientBytes is what a stream reads from its client (who should send
// nothing) before giving up on it.
const maxClientBytes = 64 << 10

// open sends the stream's headers: on the connection itself when it can be
// taken over (HTTP/1), else through the ResponseWriter.
func (s *stream) open(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		if conn, _, err := rc.Hijack(); err == nil {
			out := &connSink{conn: conn, chunked: r.ProtoMinor >= 1}
			if sc, ok := conn.(syscall.Conn); ok {
				out.raw, _ = sc.SyscallConn()
			}
			if err := out.header(h, s.h.cfg.WriteTimeout); err != nil {
				conn.Close()
				return nil // the client is gone: nobody to answer
			}
			s.out = out
			s.t.setConn(s.w, conn, out.raw, out.chunked)
			return nil
		}
	}
	s.out = &handlerSink{w: w, rc: rc}
	if err := s.out.deadline(time.Now().Add(s.h.cfg.WriteTimeout)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// run streams until the end, then lets go of everything the stream held.
func (s *stream) run(ctx context.Context, sess *store.Session) {
	defer s.end()
	if s.out == nil {
		return // the client left while the headers went out
	}
	defer func() { s.out.close(s.clean) }()
	if !s.start(sess) {
		return
	}
	for s.step(ctx) {
	}
}

// end detaches the stream from its tail and frees its slot (once).
func (s *stream) end() {
	if s.t != nil {
		s.h.detach(s.t, s.w)
		s.t = nil
	}
	s.release()
}

func (s *stream) start(sess *store.Session) bool {
	var b jsonBuf
	b.begin(0, "start")
	b.str("runtime", sess.Runtime)
	b.str("provider", sess.Provider)
	b.str("session_id", sess.ID)
	b.end()
	s.buf = b.b
	if !s.flush() {
		return false
	}
	s.sent(time.Now())
	return true
}

// sent restarts both quiet timers: heartbeats and the stale timeout count
// from the last thing the client was sent.
func (s *stream) sent(now time.Time) {
	s.staleAt, s.beatAt = now.Add(s.h.cfg.Stale), now.Add(s.h.cfg.Heartbeat)
}

// step sends what there is next, or waits for it, or ends the stream.
func (s *stream) step(ctx context.Context) bool {
	if s.h.closed.Load() {
		return false // shutting down: the client resumes elsewhere
	}
	snap := s.t.snap.Load()
	if s.after < snap.from {
		return s.replay(ctx, snap)
	}
	if rows := snap.after(s.after); len(rows) > 0 {
		return s.sendTaken(rows)
	}
	switch {
	case snap.sess == nil:
		s.deleted()
		return false
	case snap.complete && store.TerminalStatus(snap.sess.Status):
		// The status was read before the rows, and the runner commits a
		// turn's rows before its status: terminal plus no rows after the
		// cursor means the log is complete.
		s.finish(snap.sess)
		return false
	}
	return s.wait(ctx, snap)
}

// take copies the first chunk's worth of rows out of a snapshot, so that a
// stream blocked writing them to a slow client holds those rows and not
// the tail's whole array (with everything it references) as it was; the
// copy is let go after the send.
func (s *stream) take(rows []row) []row {
	n, size := 0, 0
	for n < len(rows) && (n == 0 || size < s.chunk()) {
		size += len(rows[n].frame)
		n++
	}
	s.rows = append(s.rows[:0], rows[:n]...)
	return s.rows
}

// sendTaken sends what take copied, then drops it.
func (s *stream) sendTaken(rows []row) bool {
	ok := s.send(s.take(rows))
	clear(s.rows)
	s.rows = s.rows[:0]
	if cap(s.rows) > 64 {
		s.rows = nil
	}
	return ok
}

// replay sends the next rows from the store, for a stream behind its tail.
func (s *stream) replay(ctx context.Context, snap *snapshot) bool {
	type batch struct {
		rows []store.Event
		err  error
	}
	b := offStack(s.h.reads, func() batch {
		rctx, cancel := context.WithTimeout(ctx, readLimit)
		defer cancel()
		rows, _, err := s.h.log.EventBatch(rctx, s.id, s.after, s.h.cfg.BatchSize, s.batch())
		return batch{rows, err}
	})
	if b.err != nil {
		return s.fail(ctx, b.err)
	}
	if len(b.rows) == 0 {
		// The tail starts at a row the log had, so rows up to it exist
		// unless the session went: the tail will say so.
		return s.wait(ctx, snap)
	}
	rows := make([]row, len(b.rows))
	for i := range b.rows {
		rows[i].Event = b.rows[i]
	}
	return s.send(rows)
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, chunkBytes+4<<10); return &b }}

// send writes rows' frames, a chunk at a time, and flushes. A row from
// the tail brings its frame; a replayed one is framed here.
func (s *stream) send(rows []row) bool {
	bp := bufs.Get().(*[]byte)
	s.buf = (*bp)[:0]
	defer func() {
		if cap(s.buf) <= 4*chunkBytes {
			*bp = s.buf[:0]
			bufs.Put(bp)
		}
		s.buf = nil
	}()
	for i := range rows {
		r := &rows[i]
		s.after = r.ID
		shown := r.frame != nil || shownKind(r.Kind) // a replayed row is framed below
		if shown && r.Kind == store.KindOutput && r.Turn > 0 && r.Turn != s.lastTurn {
			s.buf = appendTurnStart(s.buf, &r.Event)
			s.lastTurn = r.Turn
		}
		if r.frame != nil {
			s.buf = append(s.buf, r.frame...)
		} else if shown {
			s.buf, _ = appendFrame(s.buf, &r.Event)
		}
		if shown {
			s.last = r.ID
		}
		if len(s.buf) >= s.chunk() && !s.write() {
			return false
		}
	}
	if !s.flush() {
		return false
	}
	s.sent(time.Now())
	return true
}

// wait blocks until the tail has news past snap, keeping the connection
// alive with heartbeats, and ends the stream as stale when nothing has
// been sent for Stale, or when the client leaves.
func (s *stream) wait(ctx context.Context, snap *snapshot) bool {
	for {
		now := time.Now()
		if !now.Before(s.staleAt) {
			s.stale()
			return false
		}
		if !now.Before(s.beatAt) {
			s.buf = append(s.buf[:0], ": heartbeat\n\n"...)
			if !s.flush() {
				return false
			}
			s.buf = nil
			s.beatAt = now.Add(s.h.cfg.Heartbeat)
		}
		until := minTime(s.staleAt, s.beatAt)
		// Armed first, looked second: a wake in between is not lost.
		if err := s.out.arm(until); err != nil {
			return false
		}
		s.park()
		ok := s.t.snap.Load() != snap || s.h.closed.Load() || s.out.await(ctx, s.w.ch, until)
		if !s.unpark() || !ok {
			return false // the client left: nobody to tell
		}
		if s.t.snap.Load() != snap || s.h.closed.Load() {
			return true
		}
	}
}

// park lets the tail write the next rows for the stream while it waits;
// unpark takes the stream back where the tail left it, sends what its
// client did not take at once, and says whether the client is still there.
func (s *stream) park() {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	w.parked, w.after, w.last, w.lastTurn = true, s.after, s.last, s.lastTurn
}

func (s *stream) unpark() bool {
	w := s.w
	w.mu.Lock()
	w.parked = false
	s.after, s.last, s.lastTurn = w.after, w.last, w.lastTurn
	pending, sentAt, failed := w.pending, w.sentAt, w.failed
	w.pending, w.sentAt = nil, time.Time{}
	w.mu.Unlock()
	if failed {
		return false
	}
	if !sentAt.IsZero() {
		s.sent(sentAt)
	}
	if pending == nil {
		return true
	}
	if s.out.deadline(time.Now().Add(s.h.cfg.WriteTimeout)) != nil {
		return false
	}
	return s.out.(*connSink).raw != nil && s.writeRaw(pending)
}

// writeRaw sends bytes already framed (a chunk the tail began).
func (s *stream) writeRaw(p []byte) bool {
	_, err := s.out.(*connSink).conn.Write(p)
	return err == nil
}

// fail stops on a store error, which is only worth reporting when it isn't
// the client or the server going away.
func (s *stream) fail(ctx context.Context, err error) bool {
	if ctx.Err() == nil {
		s.err = err
		s.h.cfg.Logger.Warn("stream ended with an error", "session", s.id, "err", err)
	}
	return false
}

// write sends the buffered frames within the write deadline. A failed
// write means the client left or stopped reading, which is no error: the
// stream ends, and the client resumes from its last event id.
func (s *stream) write() bool {
	if len(s.buf) == 0 {
		return true
	}
	if s.out.deadline(time.Now().Add(s.h.cfg.WriteTimeout)) != nil {
		return false
	}
	start := time.Now()
	err := s.out.write(s.buf)
	s.buf = s.buf[:0]
	// A client that keeps a write waiting is read for in small batches
	// and written to in small chunks, so what it holds up is small.
	switch took := time.Since(start); {
	case took > slowWrite:
		s.slow = true
	case took < slowWrite/10:
		s.slow = false
	}
	return err == nil
}

// batch is the log data the stream reads from the store at once, and
// chunk what it gathers before a write: less for a slow client.
func (s *stream) batch() int {
	if s.slow {
		return slowBytes
	}
	return batchBytes
}

func (s *stream) chunk() int {
	if s.slow {
		return slowBytes
	}
	return chunkBytes
}

// flush writes what is buffered and pushes it to the client. A writer that
// can't flush is a wiring bug (a wrapper hiding http.Flusher) that would
// hold live output back silently, so it is reported in s.err.
func (s *stream) flush() bool {
	if !s.write() {
		return false
	}
	if err := s.out.flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			s.err = fmt.Errorf("sse: the ResponseWriter cannot flush: %w", err)
		}
		return false
	}
	return true
}

// finish ends a finished session's stream with its one terminal event,
// derived from its final state.
func (s *stream) finish(sess *store.Session) {
	var b jsonBuf
	last := s.last
	switch {
	case sess.Status == store.StatusTerminated:
		b.begin(last, "terminated")
		b.num("id", last)
		b.str("message", "Session terminated")
	case sess.Status == store.StatusFailed && sess.ExitCode == nil:
		msg := "Session failed"
		if sess.Error != "" {
			msg += ": " + sess.Error
		}
		b.begin(last, "error")
		b.num("id", last)
		b.str("message", msg)
	default:
		b.begin(last, "exit")
		b.num("id", last)
		if sess.ExitCode != nil {
			b.num("code", int64(*sess.ExitCode))
		} else {
			b.null("code") // completed without a code, e.g. interrupted before start
		}
	}
	b.end()
	s.closing(b)
}

func (s *stream) stale() {
	var b jsonBuf
	b.begin(s.last, "stale")
	b.num("id", s.last)
	b.str("message", "No output for "+seconds(s.h.cfg.Stale)+"s")
	b.end()
	s.closing(b)
}

func (s *stream) deleted() {
	var b jsonBuf
	b.begin(s.last, "error")
	b.num("id", s.last)
	b.str("message", "Session deleted")
	b.end()
	s.closing(b)
}

// closing sends the stream's last event.
func (s *stream) closing(b jsonBuf) {
	s.buf = b.b
	s.clean = s.flush()
	s.buf = nil
}

// seconds renders d for the stale message: whole seconds as the contract
// has them, fractions only for the short intervals tests configure.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// sink is where a stream's bytes go: a connection taken over from net/http,
// or the handler's ResponseWriter.
type sink interface {
	deadline(t time.Time) error // for the writes that follow
	write(p []byte) error
	flush() error
	// arm and await wait for a wake (or until, or the client leaving,
	// which await reports as false).
	arm(until time.Time) error
	await(ctx context.Context, wake <-chan struct{}, until time.Time) bool
	close(clean bool)
}

// connSink writes the response itself on a taken-over connection: chunked
// for HTTP/1.1, delimited by the close for HTTP/1.0. Waiting is a read of
// the connection, which ends when the client leaves, when the deadline
// comes, or when the tail moves the deadline to wake the stream.
type connSink struct {
	conn    net.Conn
	raw     syscall.RawConn // conn's descriptor, to wait without a read
	chunked bool
	read    int       // bytes the client sent, discarded
	until   time.Time // the write deadline set last
	iov     [3][]byte // a chunk's size line, data and end, reused
	size    [20]byte
}

func (c *connSink) header(h http.Header, timeout time.Duration) error {
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	bw := bufio.NewWriterSize(c.conn, 512)
	bw.WriteString("HTTP/1.1 200 OK\r\n")
	h = h.Clone()
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Connection", "close")
	if c.chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Write(bw)
	bw.WriteString("\r\n")
	return bw.Flush()
}

// deadline moves the write deadline to t unless the one set is near it
// (within a second): one timer change per second at most, however many
// writes.
func (c *connSink) deadline(t time.Time) error {
	if t.Sub(c.until) < time.Second {
		return nil
	}
	c.until = t
	return c.conn.SetWriteDeadline(t)
}

func (c *connSink) write(p []byte) error {
	if !c.chunked {
		_, err := c.conn.Write(p)
		return err
	}
	// The size line, the data and the end in one system call, without
	// copying the data (live output mostly goes out in the tail's writes).
	var size [20]byte
	bufs := net.Buffers{append(strconv.AppendInt(size[:0], int64(len(p)), 16), '\r', '\n'), p, crlf}
	_, err := bufs.WriteTo(c.conn)
	return err
}

var crlf = []byte("\r\n")

func (c *connSink) flush() error { return nil }

func (c *connSink) arm(until time.Time) error { return c.conn.SetReadDeadline(until) }

// await waits until the connection is readable or its read deadline
// passes (a wake moves it), without a read first: the client sends
// nothing, so most wakes are deadlines and cost no system call. When it is
// readable, a read tells the client leaving (EOF) from bytes it sent
// (discarded, up to maxClientBytes).
func (c *connSink) await(context.Context, <-chan struct{}, time.Time) bool {
	if c.raw == nil {
		var p [512]byte
		n, err := c.conn.Read(p[:])
		c.read += n
		return c.read <= maxClientBytes && (err == nil || errors.Is(err, os.ErrDeadlineExceeded))
	}
	waited, gone := false, false
	err := c.raw.Read(func(fd uintptr) bool {
		if !waited {
			waited = true
			return false // wait for readability (or the deadline) first
		}
		var p [512]byte
		n, err := syscall.Read(int(fd), p[:])
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
			return false
		case err != nil || n == 0:
			gone = true
		default:
			c.read += n
		}
		return true
	})
	if gone || c.read > maxClientBytes {
		return false
	}
	return err == nil || errors.Is(err, os.ErrDeadlineExceeded)
}

func (c *connSink) close(clean bool) {
	if clean && c.chunked {
		c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.conn.Write([]byte("0\r\n\r\n"))
	}
	c.conn.Close()
}

// handlerSink streams through the handler's ResponseWriter, the handler
// waiting for wakes on the watcher's channel.
type handlerSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (h *handlerSink) deadline(t time.Time) error {
	if err := h.rc.SetWriteDeadline(t); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (h *handlerSink) write(p []byte) error {
	_, err := h.w.Write(p)
	return err
}

func (h *handlerSink) flush() error { return h.rc.Flush() }

func (h *handlerSink) arm(time.Time) error { return nil }

func (h *handlerSink) await(ctx context.Context, wake <-chan struct{}, until time.Time) bool {
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	select {
	case <-wake:
	case <-timer.C:
	case <-ctx.Done():
		return false
	}
	return true
}

func (h *handlerSink) close(bool) {}
