package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// A session's egress record is bounded: past MaxEgressHosts distinct
// entries, new hosts are counted in one overflow row per verdict; it is
// the owner's only, and goes with the session.
func TestEgressRecordBoundedOwnedAndDeleted(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newSessionFixture(t)
	s, err := f.create(ctx, 10)
	is.NoErr(err)
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	hits := make([]store.EgressHit, 0, store.MaxEgressHosts+50)
	for i := 0; i < store.MaxEgressHosts+50; i++ {
		hits = append(hits, store.EgressHit{Host: fmt.Sprintf("h%d.test", i), Port: 443, Allowed: i%2 == 0, Count: 1, At: at})
	}
	is.NoErr(f.db.RecordEgress(ctx, s.ID, hits))
	is.NoErr(f.db.RecordEgress(ctx, s.ID, []store.EgressHit{{Host: "h0.test", Port: 443, Allowed: true, Count: 4, At: at.Add(time.Hour)}}))
	rows, err := f.db.ListEgress(ctx, f.userID, s.ID)
	is.NoErr(err)
	is.Equal(len(rows), store.MaxEgressHosts+2) // the cap, plus one overflow row per verdict
	is.Equal(rows[0].Host, "h0.test")           // the most recent first
	is.Equal(rows[0].Count, 5)                  // counts add up
	is.Equal(rows[0].FirstAt, at)               // first seen stays
	is.Equal(rows[0].LastAt, at.Add(time.Hour)) // last seen moves
	overflow := 0
	for _, r := range rows {
		if r.Host == "*" {
			overflow += r.Count
			is.Equal(r.Port, 0)
		}
	}
	is.Equal(overflow, 50) // everything past the cap is counted, not dropped

	_, err = f.db.ListEgress(ctx, "someone-else", s.ID)
	is.Equal(store.ErrorCode(err), store.NotFound) // another user's session is not found

	is.NoErr(f.db.FailSession(ctx, s.ID, "x"))
	is.NoErr(f.db.DeleteSession(ctx, f.userID, s.ID))
	is.NoErr(f.db.RecordEgress(ctx, s.ID, hits[:1])) // a gone session's late records are dropped, not an error
	_, err = f.db.ListEgress(ctx, f.userID, s.ID)
	is.Equal(store.ErrorCode(err), store.NotFound) // the record went with the session
}
