package sse

import (
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
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

// watcher is one stream as its tail sees it: how to wake it, and, while
// the stream waits caught up, where it is, so the tail can write the next
// rows for it without waking it.
type watcher struct {
	conn    net.Conn        // a taken-over connection: woken by moving its read deadline
	raw     syscall.RawConn // its descriptor, for the tail's writes
	chunked bool
	ch      chan struct{} // otherwise woken by a send

	mu       sync.Mutex
	parked   bool  // the stream waits: the tail may write for it
	after    int64 // while parked, the stream's position (the tail moves it)
	last     int64
	lastTurn int
	sentAt   time.Time // the tail's last write for it
	pending  []byte    // what the client did not take at once: the stream sends it first
	failed   bool      // the tail's write failed: the client is gone
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

// setConn has w woken through conn from now on, and written to by the
// tail while it waits.
func (t *tail) setConn(w *watcher, conn net.Conn, raw syscall.RawConn, chunked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w.conn, w.raw, w.chunked = conn, raw, chunked
}

func (t *tail) wakeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.watchers {
		w.wake()
	}
}

// deliver tells every watcher of snap: for a stream waiting caught up on
// a connection it took over, the tail writes the new rows itself, one
// write that the socket takes at once, and leaves the stream asleep: N
// watchers cost N writes, not N wake-ups too. Any other watcher, or one
// whose client did not take it all, or a finished or deleted session, is
// woken to do its own.
func (t *tail) deliver(prev, snap *snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var c chunkCache
	for w := range t.watchers {
		if prev == nil || !w.push(snap, &c) {
			w.wake()
		}
	}
	c.release()
}

// pushMax bounds what the tail writes for a stream: live output trickles
// in small chunks; a flood is left to each stream, whose writes and
// buffers are bounded, so a client that reads slowly holds at most this
// much of the tail's making.
const pushMax = 16 << 10

// chunkCache keeps the last chunk built: watchers at the same place (most
// of them) get the same bytes.
type chunkCache struct {
	after, lastIn int64 // the stream position the chunk is for
	lastTurn      int
	chunked       bool
	built         bool
	big           bool // more than pushMax: not pushed

	b          []byte
	bp         *[]byte
	next, last int64 // where it leaves the stream
	turn       int
}

func (c *chunkCache) release() {
	if c.bp != nil && cap(c.b) <= 4*chunkBytes && cap(c.b) > 0 {
		*c.bp = c.b[:0]
		bufs.Put(c.bp)
	}
}

// chunk is the bytes that bring a stream at after (last, lastTurn) up to
// date with rows (the snapshot's rows after after); c.next, c.last and
// c.turn are where they leave it.
func (c *chunkCache) chunk(rows []row, after, last int64, lastTurn int, chunked bool) []byte {
	if c.built && c.after == after && c.lastTurn == lastTurn && c.chunked == chunked && c.lastIn == last {
		return c.b
	}
	if c.bp == nil {
		c.bp = bufs.Get().(*[]byte)
	}
	c.after, c.lastTurn, c.chunked, c.lastIn, c.built = after, lastTurn, chunked, last, true
	b := (*c.bp)[:0]
	const sizeLine = 10 // "%08x\r\n", filled in below
	if chunked {
		b = append(b, "00000000\r\n"...)
	}
	c.big = false
	for i := range rows {
		r := &rows[i]
		if r.frame == nil {
			continue
		}
		if len(b)+len(r.frame) > pushMax {
			c.big = true // a flood: each stream sends its own, a bounded chunk at a time
			return nil
		}
		if r.Kind == store.KindOutput && r.Turn > 0 && r.Turn != lastTurn {
			b = appendTurnStart(b, &r.Event)
			lastTurn = r.Turn
		}
		b = append(b, r.frame...)
		last = r.ID
	}
	switch {
	case len(b) == sizeLine && chunked:
		b = b[:0] // nothing shown: no empty chunk, which would end the body
	case chunked:
		n := len(b) - sizeLine
		const hex = "0123456789abcdef"
		for i := 7; i >= 0; i-- {
			b[i] = hex[n&0xf]
			n >>= 4
		}
		b = append(b, '\r', '\n')
	}
	c.b, c.next, c.last, c.turn = b, rows[len(rows)-1].ID, last, lastTurn
	return b
}

// push writes snap's rows after w's position to w's connection, if w is a
// parked stream that is caught up, and says whether w may sleep on.
func (w *watcher) push(snap *snapshot, c *chunkCache) bool {
	if w.raw == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.parked || w.pending != nil || w.failed || snap.sess == nil || w.after < snap.from {
		return false
	}
	end := snap.complete && store.TerminalStatus(snap.sess.Status)
	rows := snap.after(w.after)
	if len(rows) == 0 {
		return !end
	}
	b := c.chunk(rows, w.after, w.last, w.lastTurn, w.chunked)
	if c.big {
		return false
	}
	n := 0
	if len(b) > 0 {
		var err error
		n, err = tryWrite(w.raw, b)
		if err != nil {
			w.failed = true
			return false
		}
		w.sentAt = time.Now()
	}
	w.after, w.last, w.lastTurn = c.next, c.last, c.turn
	if n < len(b) {
		w.pending = append([]byte(nil), b[n:]...)
		return false
	}
	return !end
}

// tryWrite writes p to raw's descriptor without waiting: n is what the
// socket took.
func tryWrite(raw syscall.RawConn, p []byte) (int, error) {
	var n int
	var err error
	if rerr := raw.Write(func(fd uintptr) bool {
		n, err = syscall.Write(int(fd), p)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			n, err = 0, nil
		}
		n = max(n, 0)
		return true
	}); rerr != nil {
		return 0, rerr
	}
	return n, err
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
		t.deliver(prev, next)
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
