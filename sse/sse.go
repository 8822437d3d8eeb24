// Package sse writes sessions' event streams: a stream replays a session's
// log from a cursor, tails it live, and derives the events the log doesn't
// store (start, turn_start, the one terminal event), with heartbeats and a
// stale timeout.
//
// The server's streams go through one Hub. Watchers of the same session
// share its tail: one goroutine per watched session reads the session's
// state and new rows once per change, encodes each row's frame once, and
// wakes the watchers, so N watchers cost one query plus N writes. A stream
// behind what the tail keeps (a replay from an old cursor, a slow reader)
// reads the store itself, in batches bounded by bytes. Every write has a
// deadline: a client that stops taking bytes is cut off and resumes with
// Last-Event-ID (the log is durable, so nothing is lost).
//
// An HTTP/1 stream takes its connection over from net/http once its
// headers are decided: what stays per idle stream is one goroutine with a
// small stack, blocked reading the connection (which is how it learns the
// client left), and a few hundred bytes; no request, no buffers. The tail
// wakes it by moving its read deadline. Where the connection cannot be
// taken (HTTP/2, test recorders) the stream runs in the handler instead.
//
// The Hub also counts open streams, per user and in all.
package sse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	tailKeep   = 1 << 20   // log data (and its frames) a tail keeps for its watchers
	chunkBytes = 32 << 10  // frames gathered before a write
	slowBytes  = 4 << 10   // both, for a client that reads slowly
	slowWrite  = 50 * time.Millisecond
	readLimit  = 30 * time.Second
	retryRead  = time.Second // after a failed tail read
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
	Logger       *slog.Logger  // store failures of streams under way
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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

	mu      sync.Mutex
	tails   map[string]*tail // by session, while watched
	users   map[string]int   // open streams by user
	total   int
	idle    chan struct{} // closed when total drops to 0 while shutting down
	closing bool          // Shutdown began: no new streams
	closed  atomic.Bool   // streams still open end now
	reads   chan struct{} // slots for streams' own store reads
}

// replaySlots is how many streams read the store at once.
const replaySlots = 4

// NewHub returns the hub for streams of log's sessions.
func NewHub(log Log, cfg Config) *Hub {
	return &Hub{log: log, cfg: cfg.withDefaults(), tails: map[string]*tail{}, users: map[string]int{},
		reads: make(chan struct{}, replaySlots)}
}

// Config is the hub's configuration, defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Open reports the streams open now, in all and for user.
func (h *Hub) Open(user string) (total, mine int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total, h.users[user]
}

// Shutdown stops new streams (503) and lets those open run until they end
// or ctx is done; then it closes the rest, which their clients resume
// elsewhere, and waits a moment for them to go. (Streams run in their
// handlers end with their requests' contexts.)
func (h *Hub) Shutdown(ctx context.Context) {
	h.mu.Lock()
	h.closing = true
	if h.idle == nil {
		h.idle = make(chan struct{})
		if h.total == 0 {
			close(h.idle)
		}
	}
	idle := h.idle
	h.mu.Unlock()
	select {
	case <-idle:
		return
	case <-ctx.Done():
	}
	h.closed.Store(true)
	h.mu.Lock()
	for _, t := range h.tails {
		t.closeAll()
	}
	h.mu.Unlock()
	select {
	case <-idle:
	case <-time.After(time.Second):
	}
}

// StreamQuotaError is the 429 for a user at their limit of open streams,
// shaped like the session quota's (the SDKs read limit and active).
func StreamQuotaError(limit, active int) error {
	return &store.Error{Code: store.RateLimited,
		Message: fmt.Sprintf("Concurrent stream limit reached (%d/%d). Close a stream before opening another.", active, limit),
		Extra:   map[string]any{"limit": limit, "active": active}}
}

// ErrServerStreams is the 503 for a server at its cap of open streams, or
// shutting down.
var ErrServerStreams = &store.Error{Code: store.Unavailable,
	Message: "Too many open streams on this server; try again shortly.", RetryAfter: 5 * time.Second}

// acquire counts a new stream of user, or refuses it over a limit.
func (h *Hub) acquire(user string) (release func(), err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.users[user]; h.cfg.MaxPerUser > 0 && n >= h.cfg.MaxPerUser {
		return nil, StreamQuotaError(h.cfg.MaxPerUser, n)
	}
	if h.closing || h.cfg.MaxTotal > 0 && h.total >= h.cfg.MaxTotal {
		return nil, ErrServerStreams
	}
	h.users[user]++
	h.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.total--
			if h.users[user]--; h.users[user] <= 0 {
				delete(h.users, user)
			}
			if h.total == 0 && h.idle != nil {
				close(h.idle)
			}
		})
	}, nil
}

// attach adds w to the session's tail, starting the tail if it is the
// first watcher; detach takes it off and stops the tail after the last.
func (h *Hub) attach(id string, w *watcher) *tail {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tails[id]
	if t == nil {
		t = newTail(h, id)
		h.tails[id] = t
	}
	t.add(w)
	return t
}

func (h *Hub) detach(t *tail, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.remove(w) == 0 {
		delete(h.tails, t.id)
		t.stop()
	}
}

// offStack runs a store read on a goroutine of its own and waits for it:
// SQLite's calls run deep, and a stream's goroutine, which lives as long
// as the stream, keeps whatever stack it once grew. At most cap(slots)
// run at once, so a crowd of streams replaying (slow readers fallen
// behind) neither grows a crowd of deep stacks nor crowds the API's
// queries out.
func offStack[T any](slots chan struct{}, f func() T) T {
	slots <- struct{}{}
	defer func() { <-slots }()
	done := make(chan T, 1)
	go func() { done <- f() }()
	return <-done
}

// Stream serves the session's events from cursor until the session ends,
// goes stale, is deleted, the client stops taking bytes or leaves, or the
// hub shuts down. The caller has checked that the session exists and is
// user's. Before anything is written it may return a domain error the
// caller answers with JSON: a limit (429, 503), or the store's error
// reading the session. Otherwise it returns nil, perhaps before the stream
// ends (an HTTP/1 stream goes on without the handler), or, for a stream
// run in the handler, an error for a ResponseWriter that cannot flush.
// A store failure once streaming ends the stream without a terminal event,
// so the client reconnects; it is logged.
func (h *Hub) Stream(w http.ResponseWriter, r *http.Request, user, sessionID string, cursor int64) error {
	ctx := r.Context()
	release, err := h.acquire(user)
	if err != nil {
		return err
	}
	s := &stream{h: h, id: sessionID, after: cursor, last: cursor, release: release, slow: true}
	s.w = &watcher{ch: make(chan struct{}, 1)}
	s.t = h.attach(sessionID, s.w)
	snap, err := s.t.first(ctx)
	if err == nil && snap.sess == nil {
		err = snap.gone // deleted before the stream began: nothing written yet
	}
	if err != nil {
		s.end()
		return err
	}
	if err := s.open(w, r); err != nil {
		s.end()
		return err
	}
	if _, ok := s.out.(*connSink); ok {
		go s.run(context.Background(), snap.sess)
		return nil
	}
	s.run(ctx, snap.sess)
	return s.err
}
