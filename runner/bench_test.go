package runner

import (
	"strings"
	"testing"

	"github.com/aod/aod/store"
)

const benchBytes = 100 << 20 // 100 MiB

// BenchmarkIngest100MB measures a shell session printing 100 MiB, from
// enqueue to the turn's recorded end (every byte committed to the log).
// Compare with BenchmarkRawBatchedInsert100MB from the same run.
func BenchmarkIngest100MB(b *testing.B) {
	f := newFixture(b, Config{Sandbox: SandboxAuto})
	b.Logf("sandbox: %s", f.r.Sandbox())
	// One session first: a new data dir's one-time work (the sprites' base
	// layer, the warm pool) is start-up, not ingest.
	warm := f.create("true\n", sessionOpts{timeout: 600})
	f.r.Enqueue(warm.ID)
	if done := f.wait(warm.ID); done.Status != store.StatusCompleted {
		b.Fatalf("warm-up session: %s %s", done.Status, done.Error)
	}
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := f.create("head -c 104857600 /dev/zero | tr '\\0' a\n", sessionOpts{timeout: 600})
		b.StartTimer()
		f.r.Enqueue(s.ID)
		done := f.wait(s.ID)
		b.StopTimer()
		if done.Status != store.StatusCompleted {
			b.Fatalf("session %s: %s %s", s.ID, done.Status, done.Error)
		}
		var n int
		for _, e := range f.events(s.ID) {
			if e.Kind == store.KindOutput {
				n += len(e.Data)
			}
		}
		if n != benchBytes {
			b.Fatalf("stored %d bytes, want %d", n, benchBytes)
		}
		b.StartTimer()
	}
}

// BenchmarkRawBatchedInsert100MB is the baseline: the same bytes as 32 KiB
// chunks appended straight to the log in batches of 32.
func BenchmarkRawBatchedInsert100MB(b *testing.B) {
	f := newStore(b)
	chunk := strings.Repeat("a", 32<<10)
	b.SetBytes(benchBytes)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := f.create("", sessionOpts{})
		b.StartTimer()
		batch := make([]store.Event, 0, 32)
		for range benchBytes / len(chunk) {
			batch = append(batch, store.Event{Turn: 1, Kind: store.KindOutput, Stream: "stdout", Data: chunk})
			if len(batch) == 32 {
				if err := f.db.AppendEvents(f.ctx, s.ID, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := f.db.AppendEvents(f.ctx, s.ID, batch); err != nil {
			b.Fatal(err)
		}
	}
}
