// Package sse writes a session's event stream: it replays the session's log
// from a cursor, tails it live by waiting on the store's change notifier, and
// derives the events the log doesn't store (start, turn_start, the one
// terminal event), with heartbeats and a stale timeout.
package sse

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// The contract's defaults, exported so command-line flags can offer them.
const (
	DefaultHeartbeat = 15 * time.Second
	DefaultStale     = 600 * time.Second
	DefaultBatchSize = 500
)

// Config tunes a stream. Zero fields take the defaults above.
type Config struct {
	Heartbeat time.Duration // quiet time before a ": heartbeat" comment
	Stale     time.Duration // time without new rows before "stale" ends the stream
	BatchSize int           // rows read per query
}

func (c Config) withDefaults() Config {
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Stale <= 0 {
		c.Stale = DefaultStale
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
	Events(ctx context.Context, sessionID string, after int64, limit int) ([]store.Event, error)
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

// Stream writes the session's events from cursor until the session ends,
// goes stale, is deleted, or ctx is done. The caller has checked that the
// session exists and is the user's; if it can't be read now, Stream writes
// nothing and returns the store's error so the caller can still answer with
// JSON. Once streaming it returns nil when the client goes away (there is
// no one left to tell); an error means a store failure, after which the
// connection closes without a terminal event so clients reconnect, or a
// ResponseWriter that cannot flush.
func Stream(ctx context.Context, w http.ResponseWriter, log Log, sessionID string, cursor int64, cfg Config) error {
	s := &stream{log: log, id: sessionID, cfg: cfg.withDefaults(), after: cursor, last: cursor}
	// Take the change sequence before the first read so a change landing
	// between that read and the first wait still wakes us.
	s.seq = log.ChangeSeq(sessionID)
	sess, err := log.SessionState(ctx, sessionID)
	if err != nil {
		return err
	}
	s.sess = sess
	if err := s.open(w); err != nil {
		return err
	}
	if !s.start() {
		return s.err
	}
	for {
		read, ok := s.replay(ctx)
		if !ok {
			return s.err
		}
		// The status was read before the rows, and the runner commits a
		// turn's rows before its status: terminal plus no rows means the log
		// is complete. Any rows, even after a terminal status, only say the
		// log moved (perhaps into a new turn), so read again before ending
		// or waiting.
		if read == 0 {
			if store.TerminalStatus(s.sess.Status) {
				s.finish()
				return s.err
			}
			if !s.wait(ctx) {
				return s.err
			}
		}
		if !s.refresh(ctx) {
			return s.err
		}
	}
}

// stream is one client's position in one session's log. Its methods report
// whether streaming goes on; when it doesn't, err says why if that is
// anyone's fault but the client's.
type stream struct {
	log  Log
	id   string
	cfg  Config
	seq  uint64         // change sequence taken before sess and the next read
	sess *store.Session // status as of seq

	after    int64 // read position: every row id seen, shown or not
	last     int64 // id of the last event delivered, for terminal events
	lastTurn int   // so a resume starts again with a turn_start

	staleAt, beatAt time.Time

	w   http.ResponseWriter
	rc  *http.ResponseController
	buf jsonBuf // frames batched into one write and flush per batch of rows
	err error
}

// open sends the stream's headers.
func (s *stream) open(w http.ResponseWriter) error {
	s.w, s.rc = w, http.NewResponseController(w)
	// The server's write timeout is for ordinary responses; a stream may
	// legitimately stay open for as long as the session runs.
	if err := s.rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *stream) start() bool {
	s.buf.begin(0, "start")
	s.buf.str("runtime", s.sess.Runtime)
	s.buf.str("provider", s.sess.Provider)
	s.buf.str("session_id", s.sess.ID)
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

// replay sends the next batch of rows after the read position and says how
// many it read.
func (s *stream) replay(ctx context.Context) (int, bool) {
	rows, err := s.log.Events(ctx, s.id, s.after, s.cfg.BatchSize)
	if err != nil {
		return 0, s.fail(ctx, err)
	}
	if len(rows) == 0 {
		return 0, true
	}
	for i := range rows {
		e := &rows[i]
		s.after = e.ID
		if s.event(e) {
			s.last = e.ID
		}
	}
	if !s.flush() {
		return len(rows), false
	}
	s.sent(time.Now())
	return len(rows), true
}

// wait blocks until the session's log or state changes, keeping the
// connection alive with heartbeats, and ends the stream as stale when
// nothing has been sent for cfg.Stale.
func (s *stream) wait(ctx context.Context) bool {
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
		err := s.log.WaitChange(wctx, s.id, s.seq)
		cancel()
		if ctx.Err() != nil {
			return false // the client left: nobody to tell
		}
		if err == nil {
			return true
		}
	}
}

// refresh rereads the session's state, sequence first as in Stream. A
// session deleted under the stream ends it.
func (s *stream) refresh(ctx context.Context) bool {
	s.seq = s.log.ChangeSeq(s.id)
	sess, err := s.log.SessionState(ctx, s.id)
	if store.ErrorCode(err) == store.NotFound {
		s.deleted()
		return false
	}
	if err != nil {
		return s.fail(ctx, err)
	}
	s.sess = sess
	return true
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

// flush sends what is buffered and reports whether streaming can go on. A
// failed write means the client left, which is no error; a writer that
// can't flush is a wiring bug (a wrapper hiding http.Flusher) that would
// hold live output back silently, so it is reported in s.err.
func (s *stream) flush() bool {
	if len(s.buf.b) > 0 {
		_, err := s.w.Write(s.buf.b)
		s.buf.b = s.buf.b[:0]
		if err != nil {
			return false
		}
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
func (s *stream) finish() {
	b, sess, last := &s.buf, s.sess, s.last
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
