// Package sse writes sessions' event streams: a stream replays a session's
// log from a cursor, tails it live, and derives the events the log doesn't
// store (start, turn_start, the one terminal event), with heartbeats and a
// stale timeout.
//
// The server's streams go through one Hub. Watchers of the same session
// share its tail: one read of the session's state and new rows per change
// serves them all, so N watchers cost one query plus N writes; a stream
// behind what the tail keeps (a replay from an old cursor, a slow reader)
// reads the store itself, in batches bounded by bytes. Frames are encoded
// one at a time into a small buffer and written straight to the
// connection, each write with a deadline: a client that stops taking bytes
// is cut off and resumes with Last-Event-ID (the log is durable, so nothing
// is lost). The Hub also counts open streams, per user and in all.
package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// The defaults, exported so command-line flags can offer them.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultStale        = 600 * time.Second
	DefaultWriteTimeout = 60 * time.Second
	DefaultMaxPerUser   = 1000
	DefaultMaxTotal     = 10_000
	DefaultBatchSize    = 500
)

// Sizes that bound a stream's and a tail's memory.
const (
	batchBytes = 64 << 10  // log data a stream reads from the store at once
	tailRead   = 256 << 10 // log data one tail read takes
	tailKeep   = 1 << 20   // log data a tail keeps for its watchers
	frameFlush = 32 << 10  // encoded frames buffered before a write
	readLimit  = 30 * time.Second
)

// Config tunes the streams. Zero fields take the defaults; a negative limit
// turns it off.
type Config struct {
	Heartbeat    time.Duration // quiet time before a ": heartbeat" comment
	Stale        time.Duration // time without new rows before "stale" ends the stream
	WriteTimeout time.Duration // a write the client does not take in this long ends the stream
	MaxPerUser   int           // open streams per user (429 beyond)
	MaxTotal     int           // open streams on the server (503 beyond)
	BatchSize    int           // rows read per query
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Stale <= 0 {
		c.Stale = DefaultStale
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxPerUser == 0 {
		c.MaxPerUser = DefaultMaxPerUser
	}
	if c.MaxTotal == 0 {
		c.MaxTotal = DefaultMaxTotal
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	return c
}

// Log is the part of the store a stream reads, declared here so sse depends
// on those reads alone rather than on the whole database.
type Log interface {
	// ChangeSeq and WaitChange are the notifier: a sequence taken before a
	// read makes WaitChange return at once if anything changed since.
	ChangeSeq(sessionID string) uint64
	WaitChange(ctx context.Context, sessionID string, seq uint64) error
	SessionState(ctx context.Context, id string) (*store.Session, error)
	EventBatch(ctx context.Context, sessionID string, after int64, maxRows, maxBytes int) ([]store.Event, bool, error)
	LastEventID(ctx context.Context, sessionID string) (int64, error)
}

// The server and the UI pass their *store.DB.
var _ Log = (*store.DB)(nil)

// ErrBadCursor is the 400 for a resume cursor that is not an integer; its
// text is the contract's detail string.
var ErrBadCursor = errors.New("since must be an integer")

// ParseCursor reads the resume cursor. A non-empty Last-Event-ID header wins
// over ?since= because the Python SDK sends both. Parsing follows Python's
// int() as the original did: surrounding whitespace and a leading sign are
// fine, and negatives clamp to 0 rather than failing.
func ParseCursor(r *http.Request) (int64, error) {
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		q := r.URL.Query()
		if !q.Has("since") {
			return 0, nil
		}
		raw = q.Get("since")
	}
	n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if !errors.As(err, &ne) || ne.Err != strconv.ErrRange {
			return 0, ErrBadCursor
		}
		// Python has no overflow; a huge cursor simply matches no rows.
	}
	return max(n, 0), nil
}

// Hub runs the server's streams: it shares each watched session's tail
// among its watchers and counts open streams against the limits.
type Hub struct {
	log Log
	cfg Config

	mu    sync.Mutex
	tails map[string]*tail // by session, while watched
	users map[string]int   // open streams by user
	total int
}

// NewHub returns the hub for streams of log's sessions.
func NewHub(log Log, cfg Config) *Hub {
	return &Hub{log: log, cfg: cfg.withDefaults(), tails: map[string]*tail{}, users: map[string]int{}}
}

// Config is the hub's configuration, defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Open reports the streams open now, in all and for user.
func (h *Hub) Open(user string) (total, mine int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total, h.users[user]
}

// StreamQuotaError is the 429 for a user at their limit of open streams,
// shaped like the session quota's (the SDKs read limit and active).
func StreamQuotaError(limit, active int) error {
	return &store.Error{Code: store.RateLimited,
		Message: fmt.Sprintf("Concurrent stream limit reached (%d/%d). Close a stream before opening another.", active, limit),
		Extra:   map[string]any{"limit": limit, "active": active}}
}

// ErrServerStreams is the 503 for a server at its cap of open streams.
var ErrServerStreams = &store.Error{Code: store.Unavailable,
	Message: "Too many open streams on this server; try again shortly.", RetryAfter: 5 * time.Second}

// acquire counts a new stream of user, or refuses it over a limit.
func (h *Hub) acquire(user string) (release func(), err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.users[user]; h.cfg.MaxPerUser > 0 && n >= h.cfg.MaxPerUser {
		return nil, StreamQuotaError(h.cfg.MaxPerUser, n)
	}
	if h.cfg.MaxTotal > 0 && h.total >= h.cfg.MaxTotal {
		return nil, ErrServerStreams
	}
	h.users[user]++
	h.total++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.total--
		if h.users[user]--; h.users[user] <= 0 {
			delete(h.users, user)
		}
	}, nil
}

// attach returns the session's tail for one more watcher; detach lets go.
func (h *Hub) attach(id string) *tail {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tails[id]
	if t == nil {
		t = &tail{id: id}
		h.tails[id] = t
	}
	t.refs++
	return t
}

func (h *Hub) detach(t *tail) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.refs--; t.refs == 0 {
		delete(h.tails, t.id)
	}
}

// Stream writes the session's events from cursor until the session ends,
// goes stale, is deleted, the client stops taking bytes, or ctx is done. The
// caller has checked that the session exists and is user's. Before anything
// is written it may return a domain error the caller answers with JSON: a
// limit (429, 503), or the store's error reading the session. Once
// streaming it returns nil when the client goes away or stalls (there is no
// one left to tell); an error means a store failure, after which the
// connection closes without a terminal event so clients reconnect, or a
// ResponseWriter that cannot flush.
func (h *Hub) Stream(ctx context.Context, w http.ResponseWriter, user, sessionID string, cursor int64) error {
	release, err := h.acquire(user)
	if err != nil {
		return err
	}
	defer release()
	t := h.attach(sessionID)
	defer h.detach(t)
	s := &stream{h: h, t: t, log: h.log, id: sessionID, cfg: h.cfg, after: cursor, last: cursor}
	v, err := t.current(ctx, h)
	if err != nil {
		return err
	}
	if v.sess == nil {
		return v.gone // deleted before the stream began: nothing written yet
	}
	if err := s.open(w); err != nil {
		return err
	}
	if !s.start(v.sess) {
		return s.err
	}
	for s.step(ctx) {
	}
	return s.err
}

// tail is what a session's watchers share: the session's state and its
// newest rows, as of one read, brought up to date by one read at a time.
type tail struct {
	id   string
	refs int // watchers (the hub's mu)

	mu      sync.Mutex
	ready   bool          // read at least once
	v       view          // as of the last read
	rows    []store.Event // the rows with ids in (from, end], ascending
	from    int64         // every row after from, up to end, is in rows
	end     int64         // the newest row read
	size    int           // data bytes in rows
	loading chan struct{} // closed when the read under way ends
	err     error         // the last read's failure
}

// view is a tail's state as one read left it.
type view struct {
	gen      uint64         // counts the tail's reads
	seq      uint64         // notifier sequence taken before sess and the rows were read
	sess     *store.Session // nil when the session is gone
	gone     error          // why, then
	complete bool           // the read reached the end of the log
}

// current is the tail's view, read first if it never was.
func (t *tail) current(ctx context.Context, h *Hub) (view, error) {
	t.mu.Lock()
	ready, v := t.ready, t.v
	t.mu.Unlock()
	if ready {
		return v, nil
	}
	if err := t.read(ctx, h, v.gen); err != nil {
		return view{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.v, nil
}

// after returns the rows after cursor the tail holds and its view; behind
// says cursor is older than what it keeps (the stream reads the store).
func (t *tail) after(cursor int64) (rows []store.Event, v view, behind bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cursor < t.from {
		return nil, t.v, true
	}
	i, _ := slices.BinarySearchFunc(t.rows, cursor, func(e store.Event, id int64) int { return cmpID(e.ID, id+1) })
	return t.rows[i:len(t.rows):len(t.rows)], t.v, false
}

func cmpID(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// read brings the tail up to date: the session's state (sequence first, so
// a change landing during the read is not missed), then the rows after
// end, at most tailRead bytes of them. Streams needing a read while one
// runs wait for it instead of reading too, and a stream whose view (seen,
// a view's gen) is older than the tail's has nothing to read. The read is
// not the client's: its context is its own, bounded in time.
func (t *tail) read(ctx context.Context, h *Hub, seen uint64) error {
	t.mu.Lock()
	if t.ready && t.v.gen != seen && t.loading == nil {
		t.mu.Unlock()
		return nil // read since the stream looked
	}
	if ch := t.loading; ch != nil {
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.err
	}
	ch := make(chan struct{})
	t.loading = ch
	ready, end := t.ready, t.end
	t.mu.Unlock()

	rctx, cancel := context.WithTimeout(context.Background(), readLimit)
	defer cancel()
	seq := h.log.ChangeSeq(t.id)
	sess, err := h.log.SessionState(rctx, t.id)
	var rows []store.Event
	full := false
	if err == nil {
		if !ready {
			// A new tail starts at the log's end; older rows are replays.
			end, err = h.log.LastEventID(rctx, t.id)
		} else {
			rows, full, err = h.log.EventBatch(rctx, t.id, end, h.cfg.BatchSize, tailRead)
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.loading = nil
	close(ch)
	gone := store.ErrorCode(err) == store.NotFound
	if err != nil && !gone {
		t.err = err
		return err
	}
	t.err = nil
	t.v = view{gen: t.v.gen + 1, seq: seq, sess: sess, complete: !full}
	if gone {
		t.v.sess, t.v.gone, t.v.complete = nil, err, true
	}
	if !ready {
		t.ready, t.from, t.end = true, end, end
		return nil
	}
	for _, e := range rows {
		t.size += len(e.Data)
	}
	t.rows = append(t.rows, rows...)
	if n := len(rows); n > 0 {
		t.end = rows[n-1].ID
	}
	if t.size > tailKeep {
		// Keep the newest rows; streams holding older ones keep theirs.
		i := 0
		for t.size > tailKeep && i < len(t.rows)-1 {
			t.size -= len(t.rows[i].Data)
			i++
		}
		if i > 0 {
			t.from = t.rows[i-1].ID
			t.rows = slices.Clone(t.rows[i:])
		}
	}
	return nil
}

// stream is one client's position in one session's log. Its methods report
// whether streaming goes on; when it doesn't, err says why if that is
// anyone's fault but the client's.
type stream struct {
	h   *Hub
	t   *tail
	log Log
	id  string
	cfg Config

	after    int64 // read position: every row id seen, shown or not
	last     int64 // id of the last event delivered, for terminal events
	lastTurn int   // so a resume starts again with a turn_start

	staleAt, beatAt time.Time

	w   http.ResponseWriter
	rc  *http.ResponseController
	buf jsonBuf // frames not yet written
	err error
}

// open sends the stream's headers.
func (s *stream) open(w http.ResponseWriter) error {
	s.w, s.rc = w, http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if !s.deadline() {
		return s.err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// deadline gives the next write WriteTimeout to go through. The server's
// own write timeout is for ordinary responses; this one is per write, so a
// stream may stay open as long as its session runs while a client that
// stops reading is cut off.
func (s *stream) deadline() bool {
	err := s.rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
		return false
	}
	return true
}

func (s *stream) start(sess *store.Session) bool {
	s.buf.begin(0, "start")
	s.buf.str("runtime", sess.Runtime)
	s.buf.str("provider", sess.Provider)
	s.buf.str("session_id", sess.ID)
	s.buf.end()
	if !s.flush() {
		return false
	}
	s.sent(time.Now())
	return true
}

// sent restarts both quiet timers: heartbeats and the stale timeout count
// from the last thing the client was sent.
func (s *stream) sent(now time.Time) {
	s.staleAt, s.beatAt = now.Add(s.cfg.Stale), now.Add(s.cfg.Heartbeat)
}

// step sends what there is next, or waits for it, or ends the stream.
func (s *stream) step(ctx context.Context) bool {
	rows, v, behind := s.t.after(s.after)
	if behind {
		return s.replay(ctx)
	}
	if len(rows) > 0 {
		return s.send(rows)
	}
	switch {
	case !v.complete || s.log.ChangeSeq(s.id) != v.seq:
		// More rows than one read takes, or news since: read again.
		return s.refresh(ctx, v.gen)
	case v.sess == nil:
		s.deleted()
		return false
	case store.TerminalStatus(v.sess.Status):
		// The status was read before the rows, and the runner commits a
		// turn's rows before its status: terminal plus no rows after the
		// cursor means the log is complete.
		s.finish(v.sess)
		return false
	}
	return s.wait(ctx, v.seq) && s.refresh(ctx, v.gen)
}

// replay sends the next rows from the store, for a stream behind its tail.
func (s *stream) replay(ctx context.Context) bool {
	seq := s.log.ChangeSeq(s.id)
	rows, _, err := s.log.EventBatch(ctx, s.id, s.after, s.cfg.BatchSize, batchBytes)
	if err != nil {
		return s.fail(ctx, err)
	}
	if len(rows) == 0 {
		// The tail starts at a row the log had, so rows up to it exist,
		// unless the session went: look, and then wait rather than spin.
		_, v, _ := s.t.after(s.after)
		if !s.refresh(ctx, v.gen) {
			return false
		}
		if _, v, _ = s.t.after(s.after); v.sess == nil {
			s.deleted()
			return false
		}
		return s.wait(ctx, seq)
	}
	return s.send(rows)
}

// refresh has the tail read again unless it did since view gen. A session
// deleted under the stream ends it (the next step sees it gone).
func (s *stream) refresh(ctx context.Context, gen uint64) bool {
	if err := s.t.read(ctx, s.h, gen); err != nil {
		return s.fail(ctx, err)
	}
	return true
}

// send writes rows as frames, a few KiB at a time, and flushes.
func (s *stream) send(rows []store.Event) bool {
	for i := range rows {
		e := &rows[i]
		s.after = e.ID
		if s.event(e) {
			s.last = e.ID
		}
		if len(s.buf.b) >= frameFlush && !s.write() {
			return false
		}
	}
	if !s.flush() {
		return false
	}
	s.sent(time.Now())
	return true
}

// wait blocks until the session's log or state changes past seq, keeping
// the connection alive with heartbeats, and ends the stream as stale when
// nothing has been sent for cfg.Stale.
func (s *stream) wait(ctx context.Context, seq uint64) bool {
	for {
		now := time.Now()
		if !now.Before(s.staleAt) {
			s.stale()
			return false
		}
		if !now.Before(s.beatAt) {
			s.buf.b = append(s.buf.b, ": heartbeat\n\n"...)
			if !s.flush() {
				return false
			}
			s.beatAt = now.Add(s.cfg.Heartbeat)
		}
		wctx, cancel := context.WithDeadline(ctx, minTime(s.staleAt, s.beatAt))
		err := s.log.WaitChange(wctx, s.id, seq)
		cancel()
		if ctx.Err() != nil {
			return false // the client left: nobody to tell
		}
		if err == nil {
			return true
		}
	}
}

// fail stops on a store error, which is only worth reporting when it isn't
// the client or the server going away.
func (s *stream) fail(ctx context.Context, err error) bool {
	if ctx.Err() == nil {
		s.err = err
	}
	return false
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

// write sends the buffered frames, within the write deadline. A failed
// write means the client left or stopped reading, which is no error.
func (s *stream) write() bool {
	if len(s.buf.b) == 0 {
		return true
	}
	if !s.deadline() {
		return false
	}
	_, err := s.w.Write(s.buf.b)
	s.buf.reset()
	return err == nil
}

// flush writes what is buffered and pushes it to the client. A writer that
// can't flush is a wiring bug (a wrapper hiding http.Flusher) that would
// hold live output back silently, so it is reported in s.err.
func (s *stream) flush() bool {
	if !s.write() || !s.deadline() {
		return false
	}
	if err := s.rc.Flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			s.err = fmt.Errorf("sse: the ResponseWriter cannot flush: %w", err)
		}
		return false
	}
	return true
}

// event frames one log row and reports whether it was shown. Rows of kinds
// the stream doesn't know are the runner's own markers: skipped.
func (s *stream) event(e *store.Event) bool {
	b := &s.buf
	switch e.Kind {
	case store.KindStage:
		b.begin(e.ID, "stage")
		b.num("id", e.ID)
		b.str("stage", e.Stage)
		b.str("state", e.State)
		if e.DurationMS != nil && (e.State == store.StageDone || e.State == store.StageFailed) {
			b.num("duration_ms", *e.DurationMS)
		}
		if e.Data != "" {
			// Failures say why; aod's started/done rows may say what the
			// stage is doing (e.g. a first-time runtime install).
			b.str("message", e.Data)
		}
		b.end()
	case store.KindOutput:
		if e.Turn > 0 && e.Turn != s.lastTurn {
			// No id: line, so a client resuming from it still gets the output.
			b.begin(0, "turn_start")
			b.num("id", e.ID)
			b.num("turn", int64(e.Turn))
			b.end()
			s.lastTurn = e.Turn
		}
		b.begin(e.ID, "output")
		b.num("id", e.ID)
		b.str("stream", e.Stream)
		b.str("data", e.Data)
		if e.Turn > 0 {
			b.num("turn", int64(e.Turn))
		} else {
			b.null("turn")
		}
		b.end()
	default:
		return false
	}
	return true
}

// finish ends a finished session's stream with its one terminal event,
// derived from its final state.
func (s *stream) finish(sess *store.Session) {
	b, last := &s.buf, s.last
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
	s.flush()
}

func (s *stream) stale() {
	s.buf.begin(s.last, "stale")
	s.buf.num("id", s.last)
	s.buf.str("message", "No output for "+seconds(s.cfg.Stale)+"s")
	s.buf.end()
	s.flush()
}

func (s *stream) deleted() {
	s.buf.begin(s.last, "error")
	s.buf.num("id", s.last)
	s.buf.str("message", "Session deleted")
	s.buf.end()
	s.flush()
}

// jsonBuf writes SSE frames holding flat JSON objects the way Python's
// json.dumps does (", " and ": " separators, ensure_ascii), with "type"
// first. encoding/json can't put a key first in a map or space its output,
// and post-processing its bytes would risk touching string contents.
type jsonBuf struct{ b []byte }

// reset empties the buffer, letting go of it when one huge frame grew it,
// so an idle stream holds no more than a small buffer.
func (j *jsonBuf) reset() {
	if cap(j.b) > 4*frameFlush {
		j.b = nil
		return
	}
	j.b = j.b[:0]
}

// begin starts a frame; idLine > 0 adds the "id:" line resumes rely on.
func (j *jsonBuf) begin(idLine int64, typ string) {
	if idLine > 0 {
		j.b = append(j.b, "id: "...)
		j.b = strconv.AppendInt(j.b, idLine, 10)
		j.b = append(j.b, '\n')
	}
	j.b = append(j.b, `data: {"type": `...)
	j.b = appendString(j.b, typ)
}

func (j *jsonBuf) key(k string) {
	j.b = append(j.b, ", "...)
	j.b = appendString(j.b, k)
	j.b = append(j.b, ": "...)
}

func (j *jsonBuf) str(k, v string) {
	j.key(k)
	j.b = appendString(j.b, v)
}

func (j *jsonBuf) num(k string, n int64) {
	j.key(k)
	j.b = strconv.AppendInt(j.b, n, 10)
}

func (j *jsonBuf) null(k string) {
	j.key(k)
	j.b = append(j.b, "null"...)
}

func (j *jsonBuf) end() { j.b = append(j.b, "}\n\n"...) }

const hexDigits = "0123456789abcdef"

// appendString quotes s as Python's json.dumps(ensure_ascii=True) does:
// only printable ASCII passes through, everything else is escaped, astral
// characters as surrogate pairs. Invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			if c < utf8.RuneSelf {
				b = appendU(b, rune(c))
				break
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r >= 0x10000 {
				r -= 0x10000
				b = appendU(b, 0xd800|(r>>10)&0x3ff)
				b = appendU(b, 0xdc00|r&0x3ff)
			} else {
				b = appendU(b, r)
			}
			i += size
			start = i
			continue
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
