package sessions_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aod/aod/sessions"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// recorder is a runner that only notes what it was told.
type recorder struct{ enqueued, interrupted, terminated, deleted []string }

func (r *recorder) Enqueue(id string)   { r.enqueued = append(r.enqueued, id) }
func (r *recorder) Terminate(id string) { r.terminated = append(r.terminated, id) }
func (r *recorder) Interrupt(id string) { r.interrupted = append(r.interrupted, id) }
func (r *recorder) Delete(id string)    { r.deleted = append(r.deleted, id) }

func setup(t *testing.T) (*store.DB, string, string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	u, err := db.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := store.ResolveModel("shell", "", store.ShellModel)
	a, err := db.CreateAgent(ctx, u.ID, store.AgentInput{Name: "sh", Model: m})
	if err != nil {
		t.Fatal(err)
	}
	return db, u.ID, a.ID
}

func TestUseCasesTellTheRunner(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db, user, agent := setup(t)
	run := &recorder{}
	svc := sessions.New(db, run, store.SessionPolicy{MaxConcurrent: 1})

	s, err := svc.Create(ctx, user, store.SessionInput{AgentID: agent, Prompt: "echo", Timeout: 60})
	is.NoErr(err)                          // created
	is.Equal(run.enqueued, []string{s.ID}) // and queued
	_, err = svc.Create(ctx, user, store.SessionInput{AgentID: agent, Prompt: "echo", Timeout: 60})
	is.Equal(store.ErrorCode(err), store.RateLimited) // the service's policy applies (quota 1)
	is.Equal(len(run.enqueued), 1)                    // a refused create queues nothing

	_, err = svc.Terminate(ctx, user, s.ID)
	is.NoErr(err)                            // terminated
	is.Equal(run.terminated, []string{s.ID}) // the runner kills it
	is.NoErr(svc.Delete(ctx, user, s.ID))    // deleted
	is.Equal(run.deleted, []string{s.ID})    // the runner removes the sprite
}

func TestNoBackendAnswers503(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db, user, agent := setup(t)
	svc := sessions.New(db, nil, store.SessionPolicy{})
	_, err := svc.Create(ctx, user, store.SessionInput{AgentID: agent, Prompt: "echo", Timeout: 60})
	is.Equal(store.ErrorCode(err), store.Unavailable)                      // 503
	is.Equal(store.ErrorMessage(err), "Session backend is not configured") // the contract's message
	err = svc.CheckPromptable(ctx, user, "0195a0c0-0000-7000-8000-000000000001")
	is.Equal(store.ErrorMessage(err), "Session backend token is not configured") // the prompt route's own wording
	sessionsList, err := db.ListSessions(ctx, user)
	is.NoErr(err)
	is.Equal(len(sessionsList), 0) // nothing stored
}

// A new session is refused while the data dir's disk has less free space
// than the server keeps: the database must never fill its disk.
func TestLowDiskRefusesNewSessions(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	db, user, agent := setup(t)
	run := &recorder{}
	in := store.SessionInput{AgentID: agent, Prompt: "echo", Timeout: 60}
	_, err := sessions.New(db, run, store.SessionPolicy{}, sessions.MinFreeDisk(1<<60)).Create(ctx, user, in)
	is.Equal(store.ErrorCode(err), store.Unavailable)                       // 503
	is.True(strings.Contains(store.ErrorMessage(err), "low on disk space")) // saying why
	is.Equal(len(run.enqueued), 0)                                          // nothing queued
	list, err := db.ListSessions(ctx, user)
	is.NoErr(err)
	is.Equal(len(list), 0) // nor stored
	_, err = sessions.New(db, run, store.SessionPolicy{}, sessions.MinFreeDisk(1)).Create(ctx, user, in)
	is.NoErr(err) // with room to spare it starts
}
