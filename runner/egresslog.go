package runner

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/aod/aod/internal/metrics"
	"github.com/aod/aod/store"
)

// egressFlushDelay is how long connection records gather before one write
// stores them: an npm install opens hundreds.
const egressFlushDelay = 250 * time.Millisecond

// egressLog keeps every session's egress record: the proxy reports each
// connection a sprite asked for, and batches of them are written to the
// store shortly after.
type egressLog struct {
	db  Store
	log *slog.Logger

	mu      sync.Mutex
	pending map[string]map[egressKey]*store.EgressHit // by session
	timer   *time.Timer                               // a flush is scheduled
}

type egressKey struct {
	host    string
	port    int
	allowed bool
}

// record notes one connection of a session's sprite.
func (l *egressLog) record(session, host string, port int, allowed bool) {
	if !allowed {
		metrics.EgressDenials.Inc()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[string]map[egressKey]*store.EgressHit{}
	}
	hits := l.pending[session]
	if hits == nil {
		hits = map[egressKey]*store.EgressHit{}
		l.pending[session] = hits
	}
	k := egressKey{host, port, allowed}
	if h := hits[k]; h != nil {
		h.Count++
		h.At = time.Now()
	} else {
		hits[k] = &store.EgressHit{Host: host, Port: port, Allowed: allowed, Count: 1, At: time.Now()}
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(egressFlushDelay, l.flush)
	}
}

// flush writes what has gathered.
func (l *egressLog) flush() {
	l.mu.Lock()
	pending := l.pending
	l.pending, l.timer = nil, nil
	l.mu.Unlock()
	for session, hits := range pending {
		batch := make([]store.EgressHit, 0, len(hits))
		for _, h := range hits {
			batch = append(batch, *h)
		}
		if err := l.db.RecordEgress(context.Background(), session, batch); err != nil {
			l.log.Error("recording egress", "session", session, "err", err)
		}
	}
}
