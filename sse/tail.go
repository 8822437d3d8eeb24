package sse

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aod/aod/store"
)

// tail is what a session's watchers share: snapshots of the session's
// state and newest rows, each row's frame encoded once. One goroutine per
// tail reads the log after every change and wakes the watchers.
type tail struct {
	h    *Hub
	id   string
	snap atomic.Pointer[snapshot] // the newest; nil before the first read

	ready    chan struct{} // closed after the first read, done or failed
	firstErr error         // that read's failure, when no snapshot came of it

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	ctx      context.Context
	stop     context.CancelFunc
}

// snapshot is a session's state and newest rows as of one read. It never
// changes once published; the next read publishes another.
type snapshot struct {
	seq      uint64         // notifier sequence taken before sess and the rows were read
	sess     *store.Session // nil when the session is gone
	gone     error          // why, then
	complete bool           // the read reached the end of the log
	from     int64          // rows holds every row after from, up to end
	end      int64
	rows     []row
	size     int // bytes of rows' data and frames
}

// row is a log row with its frame, or nil for rows the stream doesn't show.
type row struct {
	store.Event
	frame []byte
}

// after is the snapshot's rows after cursor (cursor ≥ from).
func (s *snapshot) after(cursor int64) []row {
	i, _ := slices.BinarySearchFunc(s.rows, cursor+1, func(r row, id int64) int {
		switch {
		case r.ID < id:
			return -1
		case r.ID > id:
			return 1
		}
		return 0
	})
	return s.rows[i:len(s.rows):len(s.rows)]
}

// watcher is one stream as its tail sees it: how to wake it.
type watcher struct {
	conn net.Conn      // a taken-over connection: woken by moving its read deadline
	ch   chan struct{} // otherwise woken by a send
}

// aLongTimeAgo is a read deadline that has passed: it ends a blocked read
// at once.
var aLongTimeAgo = time.Unix(1, 0)

func (w *watcher) wake() {
	if w.conn != nil {
		w.conn.SetReadDeadline(aLongTimeAgo)
		return
	}
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func newTail(h *Hub, id string) *tail {
	ctx, stop := context.WithCancel(context.Background())
	t := &tail{h: h, id: id, ready: make(chan struct{}), watchers: map[*watcher]struct{}{}, ctx: ctx, stop: stop}
	go t.run()
	return t
}

func (t *tail) add(w *watcher) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.watchers[w] = struct{}{}
}

// remove takes w off and says how many watchers are left.
func (t *tail) remove(w *watcher) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.watchers, w)
	return len(t.watchers)
}

// setConn has w woken through conn from now on.
func (t *tail) setConn(w *watcher, conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w.conn = conn
}

func (t *tail) wakeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.watchers {
		w.wake()
	}
}

// closeAll ends every watcher's stream: a taken-over connection's reads and
// writes fail at once (a write may be blocked on a client that does not
// read); a handler's stream is woken to see the hub closed.
func (t *tail) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.watchers {
		if w.conn != nil {
			w.conn.SetDeadline(aLongTimeAgo)
		} else {
			w.wake()
		}
	}
}

// first is the tail's newest snapshot, waiting for the first read.
func (t *tail) first(ctx context.Context) (*snapshot, error) {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s := t.snap.Load(); s != nil {
		return s, nil
	}
	return nil, t.firstErr
}

// run reads the log after every change until the last watcher leaves: the
// state first (sequence before it, so a change landing during the read is
// not missed), then the rows after the newest it has, at most tailRead
// bytes at a time, going on at once while there are more.
func (t *tail) run() {
	var prev *snapshot
	readyOnce := sync.OnceFunc(func() { close(t.ready) })
	defer readyOnce()
	for {
		seq := t.h.log.ChangeSeq(t.id)
		next, err := t.read(prev, seq)
		if t.ctx.Err() != nil {
			return
		}
		if err != nil {
			if prev == nil {
				t.firstErr = err
				readyOnce()
			}
			t.h.cfg.Logger.Warn("stream: reading the session's log", "session", t.id, "err", err)
			select {
			case <-time.After(retryRead):
				continue
			case <-t.ctx.Done():
				return
			}
		}
		t.snap.Store(next)
		readyOnce()
		t.wakeAll()
		prev = next
		switch {
		case next.sess == nil: // gone: nothing more will come
			<-t.ctx.Done()
			return
		case !next.complete:
			continue
		}
		if t.h.log.WaitChange(t.ctx, t.id, seq) != nil {
			return
		}
	}
}

// read makes the snapshot after prev (nil: the first, which starts at the
// log's end; older rows are replays).
func (t *tail) read(prev *snapshot, seq uint64) (*snapshot, error) {
	ctx, cancel := context.WithTimeout(t.ctx, readLimit)
	defer cancel()
	sess, err := t.h.log.SessionState(ctx, t.id)
	next := &snapshot{seq: seq, sess: sess, complete: true}
	if prev != nil {
		next.from, next.end, next.rows, next.size = prev.from, prev.end, prev.rows, prev.size
	}
	if store.ErrorCode(err) == store.NotFound {
		next.sess, next.gone = nil, err
		return next, nil
	}
	if err != nil {
		return nil, err
	}
	if prev == nil {
		last, err := t.h.log.LastEventID(ctx, t.id)
		if err != nil {
			return nil, err
		}
		next.from, next.end = last, last
		return next, nil
	}
	evs, full, err := t.h.log.EventBatch(ctx, t.id, prev.end, t.h.cfg.BatchSize, tailRead)
	if err != nil {
		return nil, err
	}
	next.complete = !full
	if len(evs) == 0 {
		return next, nil
	}
	// Appending past prev's rows never touches what prev's readers see.
	for i := range evs {
		r := row{Event: evs[i]}
		r.frame, _ = appendFrame(nil, &r.Event)
		next.rows = append(next.rows, r)
		next.size += len(r.Data) + len(r.frame)
	}
	next.end = evs[len(evs)-1].ID
	if next.size > tailKeep {
		i := 0
		for next.size > tailKeep && i < len(next.rows)-1 {
			next.size -= len(next.rows[i].Data) + len(next.rows[i].frame)
			i++
		}
		if i > 0 {
			next.from = next.rows[i-1].ID
			next.rows = slices.Clone(next.rows[i:])
		}
	}
	return next, nil
}
