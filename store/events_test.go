package store

import (
	"context"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// A batch of the log is bounded by bytes as well as rows: it stops after
// the row that reaches the byte bound, says it stopped, and the next batch
// goes on from there; LastEventID is the newest row's id.
func TestEventBatchBoundedByBytes(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newEnvFixture(t)
	s := f.session(t, "")
	last, err := f.db.LastEventID(ctx, s.ID)
	is.NoErr(err)
	is.Equal(last, int64(0)) // no rows yet
	big := strings.Repeat("x", 30<<10)
	evs := []Event{{Kind: KindOutput, Turn: 1, Stream: "stdout", Data: big}, {Kind: KindOutput, Turn: 1, Stream: "stdout", Data: big},
		{Kind: KindOutput, Turn: 1, Stream: "stdout", Data: big}, {Kind: KindOutput, Turn: 1, Stream: "stdout", Data: "small"}}
	is.NoErr(f.db.AppendEvents(ctx, s.ID, evs))
	batch, full, err := f.db.EventBatch(ctx, s.ID, 0, 500, 40<<10)
	is.NoErr(err)
	is.Equal(len(batch), 2) // two 30 KiB rows reach a 40 KiB bound
	is.True(full)           // and it says more may follow
	batch, full, err = f.db.EventBatch(ctx, s.ID, batch[1].ID, 500, 40<<10)
	is.NoErr(err)
	is.Equal(len(batch), 2)          // the rest
	is.Equal(batch[1].Data, "small") // in order
	is.True(!full)                   // to the end
	batch, full, err = f.db.EventBatch(ctx, s.ID, 0, 3, 0)
	is.NoErr(err)
	is.Equal(len(batch), 3) // a row bound alone
	is.True(full)           // stops it too
	last, err = f.db.LastEventID(ctx, s.ID)
	is.NoErr(err)
	is.Equal(last, evs[3].ID) // the newest row
}
