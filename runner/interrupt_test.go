package runner

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// interrupt does what the API does: records the interrupt, then tells the
// runner.
func (f *fixture) interrupt(id string) *store.Session {
	f.t.Helper()
	s, err := f.db.InterruptSession(f.ctx, "", id) // any owner
	if err != nil {
		f.t.Fatalf("interrupt: %v", err)
	}
	f.r.Interrupt(id)
	return s
}

// An interrupted turn's processes get TERM (then KILL after the grace);
// the turn ends "completed" and interrupted with the killed process's exit
// code, the session completed with its sprite kept, and the next prompt
// runs in the same sprite.
func TestInterruptStopsTheTurnAndKeepsTheSession(t *testing.T) {
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			f := newFixture(t, Config{Sandbox: mode, KillGrace: 30 * time.Second})
			s := f.run("echo kept > note.txt\necho started\nexec sleep 1000\n", sessionOpts{})
			f.waitOutput(s.ID, "started")
			asked := f.interrupt(s.ID)
			is.Equal(asked.Status, store.StatusRunning) // the status when asked
			start := time.Now()
			done := f.wait(s.ID)
			is.True(time.Since(start) < 10*time.Second)  // TERM stopped it, no waiting for the 30s grace
			is.Equal(done.Status, store.StatusCompleted) // the session is completed (see done.Error)
			is.True(done.ExitCode != nil)
			is.Equal(*done.ExitCode, 143) // with the killed process's code (TERM)
			turns, err := f.db.ListTurns(f.ctx, f.user.ID, s.ID)
			is.NoErr(err)
			is.Equal(turns[0].Status, store.StatusCompleted)                      // the turn reports completed
			is.True(turns[0].Interrupted)                                         // and interrupted
			is.True(exists(filepath.Join(f.spriteDir(s.ID), "home", "note.txt"))) // the sprite stays

			_, err = f.db.PromptSession(f.ctx, f.user.ID, s.ID, "cat note.txt\n", 60)
			is.NoErr(err) // the next prompt is accepted at once
			f.r.Enqueue(s.ID)
			done = f.wait(s.ID)
			is.Equal(done.Status, store.StatusCompleted) // and runs
			out, _ := f.output(s.ID, 2)
			is.Equal(out, "kept\n") // in the same sprite
			turns, err = f.db.ListTurns(f.ctx, f.user.ID, s.ID)
			is.NoErr(err)
			is.True(!turns[1].Interrupted) // an interrupt is for one turn only
		})
	}
}

// A turn interrupted before it started never runs the runtime: it ends at
// once, completed and interrupted, with no exit code.
func TestInterruptBeforeTheTurnStarts(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{MaxRunning: 1})
	blocker := f.run("echo started\nexec sleep 1000\n", sessionOpts{}) // holds the one run slot
	f.waitOutput(blocker.ID, "started")
	s := f.run("echo ran > ran.txt\n", sessionOpts{})
	asked := f.interrupt(s.ID)
	is.Equal(asked.Status, store.StatusPending) // asked while it waits for a slot
	f.interrupt(blocker.ID)                     // the slot frees
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusCompleted) // it ends completed
	is.Equal(done.ExitCode, nil)                 // with no exit code: nothing ran
	turns, err := f.db.ListTurns(f.ctx, f.user.ID, s.ID)
	is.NoErr(err)
	is.True(turns[0].Interrupted)                                         // interrupted
	is.True(turns[0].StartedAt != nil && turns[0].EndedAt != nil)         // with its times set
	is.True(!exists(filepath.Join(f.spriteDir(s.ID), "home", "ran.txt"))) // the runtime never ran
	is.Equal(countContaining(f.stages(s.ID), "runtime_start"), 0)         // nor started
}

// Terminate wins a race with an interrupt.
func TestTerminateWinsOverInterrupt(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{KillGrace: 30 * time.Second})
	s := f.run("trap '' TERM\necho started\nsleep 1000\n", sessionOpts{}) // ignores TERM: only KILL ends it
	f.waitOutput(s.ID, "started")
	f.interrupt(s.ID)
	_, err := f.db.TerminateSession(f.ctx, f.user.ID, s.ID)
	is.NoErr(err)
	f.r.Terminate(s.ID)
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusTerminated) // terminated, not completed
	_, err = f.db.InterruptSession(f.ctx, f.user.ID, s.ID)
	is.Equal(store.ErrorMessage(err), "Session has been terminated") // and no more interrupts
}

// Run slots are shared fairly: while user A's sessions fill every slot and
// more of A's wait, a session of user B takes the next slot that frees, not
// the one after A's whole queue; alone, a user gets every slot.
func TestRunSlotsAreSharedBetweenUsers(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{MaxRunning: 2})
	bob, err := f.db.EnsureUser(f.ctx, "bob")
	is.NoErr(err)
	var a []*store.Session
	for range 4 {
		a = append(a, f.run("echo started\nexec sleep 1000\n", sessionOpts{}))
	}
	f.waitOutput(a[0].ID, "started")
	f.waitOutput(a[1].ID, "started") // alone, A has both slots
	b := f.run("echo started\nexec sleep 1000\n", sessionOpts{owner: bob})
	f.interrupt(a[0].ID) // a slot frees
	f.waitOutput(b.ID, "started")
	for _, s := range a[2:] {
		got, err := f.db.GetSession(f.ctx, "", s.ID)
		is.NoErr(err)
		is.Equal(got.Status, store.StatusPending) // B went first: A's queue still waits
	}
	f.interrupt(b.ID)
	f.waitOutput(a[2].ID, "started") // then A's next
	for _, s := range []*store.Session{a[1], a[2], a[3]} {
		f.interrupt(s.ID)
	}
}

// A finished session keeps its sprite for the retention (files readable, a
// completed one takes prompts), then the sweep removes it: a prompt is
// refused with the original's 409, the files API answers 410. A session
// still running is never swept.
func TestSpriteRetention(t *testing.T) {
	is := is.New(t)
	f := newFixture(t, Config{SweepInterval: 50 * time.Millisecond, SpriteRetention: time.Second})
	done := f.run("echo file > f.txt\n", sessionOpts{})
	is.Equal(f.wait(done.ID).Status, store.StatusCompleted)
	running := f.run("echo started\nexec sleep 1000\n", sessionOpts{})
	f.waitOutput(running.ID, "started")
	is.True(exists(f.spriteDir(done.ID)))                                     // kept at first
	is.True(eventually(func() bool { return !exists(f.spriteDir(done.ID)) })) // removed after the retention
	s, err := f.db.GetSession(f.ctx, "", done.ID)
	is.NoErr(err)
	is.Equal(s.ProvisionState, store.ProvisionRemoved) // recorded
	_, err = f.db.PromptSession(f.ctx, f.user.ID, done.ID, "cat f.txt", 60)
	is.Equal(store.ErrorMessage(err), "Session backend is no longer available; start a new session.") // the original's 409
	_, err = f.r.SessionSprite(f.ctx, s)
	is.Equal(store.HTTPStatus(err), 410)     // files are gone
	is.True(exists(f.spriteDir(running.ID))) // the running session's sprite stays
	f.interrupt(running.ID)
}
