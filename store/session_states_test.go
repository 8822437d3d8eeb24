package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// quotaLimit reports whether err is the concurrent-session quota refusal (a
// 429), and with which limit and active count.
func quotaLimit(err error) (limit, active int, ok bool) {
	e := store.AsError(err)
	if e == nil || e.Code != store.RateLimited {
		return 0, 0, false
	}
	limit, _ = e.Extra["limit"].(int)
	active, _ = e.Extra["active"].(int)
	return limit, active, true
}

// sessionFixture is a real database in t.TempDir with one user and one shell
// agent, which needs no model credential.
type sessionFixture struct {
	db      *store.DB
	userID  string
	agentID string
}

func newSessionFixture(t *testing.T) *sessionFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	u, err := db.EnsureUser(ctx, "ada")
	if err != nil {
		t.Fatalf("user: %v", err)
	}
	model, err := store.ResolveModel("shell", "", "local/shell")
	if err != nil {
		t.Fatalf("model: %v", err)
	}
	a, err := db.CreateAgent(ctx, u.ID, store.AgentInput{Name: "sh", Model: model})
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	return &sessionFixture{db: db, userID: u.ID, agentID: a.ID}
}

func (f *sessionFixture) create(ctx context.Context, maxConcurrent int) (*store.Session, error) {
	return f.db.CreateSession(ctx, f.userID, store.SessionInput{AgentID: f.agentID, Prompt: "echo hi", Timeout: 60, Policy: store.SessionPolicy{MaxConcurrent: maxConcurrent}})
}

// describe renders a session and its turns compactly, e.g. "failed exit=1"
// and ["1 completed exit=0", "2 failed exit=1"]; a deleted session is "gone".
func (f *sessionFixture) describe(ctx context.Context, id string) (string, []string, error) {
	s, err := f.db.GetSession(ctx, f.userID, id)
	if store.ErrorCode(err) == store.NotFound {
		return "gone", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	turns, err := f.db.ListTurns(ctx, f.userID, id)
	if err != nil {
		return "", nil, err
	}
	var ts []string
	for _, t := range turns {
		ts = append(ts, fmt.Sprintf("%d %s", t.Number, outcome(t.Status, t.ExitCode, t.Error)))
	}
	return outcome(s.Status, s.ExitCode, s.Error), ts, nil
}

func outcome(status string, exit *int, reason string) string {
	out := status
	if exit != nil {
		out += fmt.Sprintf(" exit=%d", *exit)
	}
	if reason != "" {
		out += fmt.Sprintf(" error=%q", reason)
	}
	return out
}

// sessionStep is one thing the API or the runner does to a session, and
// the state it must leave behind.
type sessionStep struct {
	op      string // create, provisioned, start, finish, prompt, terminate, fail, delete
	turn    int    // start, finish
	exit    int    // finish
	reason  string // fail
	notRun  bool   // start: StartTurn reports false
	wantErr string // the exact 409 message when the step is refused
	session string // the session afterwards, as describe renders it
	turns   []string
}

func (f *sessionFixture) apply(ctx context.Context, id *string, st sessionStep) (started bool, err error) {
	switch st.op {
	case "create":
		s, err := f.create(ctx, 0)
		if err == nil {
			*id = s.ID
		}
		return false, err
	case "provisioned":
		return false, f.db.SetProvisionState(ctx, *id, store.ProvisionDone)
	case "start":
		return f.db.StartTurn(ctx, *id, st.turn)
	case "finish":
		code := st.exit
		return false, f.db.FinishTurn(ctx, *id, st.turn, store.TurnResult{ExitCode: &code})
	case "prompt":
		// The server asks CheckPromptable before reading the body; both
		// must refuse alike.
		checkErr := f.db.CheckPromptable(ctx, f.userID, *id)
		_, err := f.db.PromptSession(ctx, f.userID, *id, "echo again", 60)
		if checkErr != nil && store.ErrorMessage(checkErr) != store.ErrorMessage(err) {
			return false, fmt.Errorf("CheckPromptable said %v, PromptSession said %v", checkErr, err)
		}
		return false, err
	case "terminate":
		_, err := f.db.TerminateSession(ctx, f.userID, *id)
		return false, err
	case "fail":
		return false, f.db.FailSession(ctx, *id, st.reason)
	case "delete":
		return false, f.db.DeleteSession(ctx, f.userID, *id)
	}
	return false, fmt.Errorf("unknown op %q", st.op)
}

const terminatedTurn = `failed error="terminated"`

func TestSessionStateMachine(t *testing.T) {
	created := sessionStep{op: "create", session: "pending", turns: []string{"1 pending"}}
	running := sessionStep{op: "start", turn: 1, session: "running", turns: []string{"1 running"}}
	completed := sessionStep{op: "finish", turn: 1, exit: 0, session: "completed exit=0", turns: []string{"1 completed exit=0"}}
	provisioned := sessionStep{op: "provisioned", session: "pending", turns: []string{"1 pending"}}
	tests := []struct {
		name  string
		steps []sessionStep
	}{
		{name: "two turns: the first completes, the second fails", steps: []sessionStep{
			created, provisioned, running, completed,
			{op: "prompt", session: "pending", turns: []string{"1 completed exit=0", "2 pending"}},
			{op: "start", turn: 2, session: "running", turns: []string{"1 completed exit=0", "2 running"}},
			{op: "finish", turn: 2, exit: 3, session: "failed exit=3", turns: []string{"1 completed exit=0", "2 failed exit=3"}},
		}},
		{name: "prompt refused while pending, running, failed", steps: []sessionStep{
			created,
			{op: "prompt", wantErr: "Session already has a pending turn", session: "pending", turns: []string{"1 pending"}},
			provisioned, running,
			{op: "prompt", wantErr: "Session is already running", session: "running", turns: []string{"1 running"}},
			{op: "finish", turn: 1, exit: 1, session: "failed exit=1", turns: []string{"1 failed exit=1"}},
			{op: "prompt", wantErr: "Session has failed and cannot be resumed. Start a new session.", session: "failed exit=1", turns: []string{"1 failed exit=1"}},
		}},
		{name: "prompt refused after completion when the sprite was never provisioned", steps: []sessionStep{
			created, running, completed,
			{op: "prompt", wantErr: "Session backend is no longer available; start a new session.", session: "completed exit=0", turns: []string{"1 completed exit=0"}},
		}},
		{name: "terminate during a run wins over the turn's late exit", steps: []sessionStep{
			created, provisioned, running,
			{op: "terminate", session: "terminated", turns: []string{"1 " + terminatedTurn}},
			{op: "finish", turn: 1, exit: 0, session: "terminated", turns: []string{"1 " + terminatedTurn}},
			{op: "prompt", wantErr: "Session has been terminated", session: "terminated", turns: []string{"1 " + terminatedTurn}},
			{op: "terminate", wantErr: "Session is already terminated", session: "terminated", turns: []string{"1 " + terminatedTurn}},
		}},
		{name: "terminate before the turn starts: StartTurn reports false", steps: []sessionStep{
			created,
			{op: "terminate", session: "terminated", turns: []string{"1 " + terminatedTurn}},
			{op: "start", turn: 1, notRun: true, session: "terminated", turns: []string{"1 " + terminatedTurn}},
		}},
		{name: "delete refused while active, allowed once finished", steps: []sessionStep{
			created,
			{op: "delete", wantErr: "Cannot delete an active session", session: "pending", turns: []string{"1 pending"}},
			running,
			{op: "delete", wantErr: "Cannot delete an active session", session: "running", turns: []string{"1 running"}},
			completed,
			{op: "delete", session: "gone"},
		}},
		{name: "FailSession while pending (provisioning failed)", steps: []sessionStep{
			created,
			{op: "fail", reason: "setup script failed", session: `failed error="setup script failed"`, turns: []string{`1 failed error="setup script failed"`}},
			{op: "start", turn: 1, notRun: true, session: `failed error="setup script failed"`, turns: []string{`1 failed error="setup script failed"`}},
			{op: "delete", session: "gone"},
		}},
		{name: "FailSession while running (server restarted)", steps: []sessionStep{
			created, provisioned, running,
			{op: "fail", reason: "server restarted during the turn", session: `failed error="server restarted during the turn"`,
				turns: []string{`1 failed error="server restarted during the turn"`}},
			{op: "prompt", wantErr: "Session has failed and cannot be resumed. Start a new session.", session: `failed error="server restarted during the turn"`,
				turns: []string{`1 failed error="server restarted during the turn"`}},
		}},
	}
	f := newSessionFixture(t)
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var id string
			for i, st := range tt.steps {
				is := is.NewRelaxed(t)
				started, err := f.apply(ctx, &id, st)
				if st.wantErr == "" {
					is.NoErr(err) // the step is allowed
				} else {
					is.Equal(store.ErrorMessage(err), st.wantErr)  // refused with the contract's message
					is.Equal(store.ErrorCode(err), store.Conflict) // as a 409
				}
				if st.op == "start" {
					is.Equal(started, !st.notRun) // StartTurn reports whether the turn may run
				}
				session, turns, err := f.describe(ctx, id)
				is.NoErr(err)                 // read back
				is.Equal(session, st.session) // the session's state after the step
				is.Equal(turns, st.turns)     // every turn's state after the step
				if t.Failed() {
					t.Fatalf("step %d (%s) left the wrong state", i+1, st.op)
				}
			}
		})
	}
}

// TestSessionQuotaUnderConcurrentCreates races N creators against a limit
// of K: the write transaction serialises them, so exactly K get a session
// and the rest the quota refusal.
func TestSessionQuotaUnderConcurrentCreates(t *testing.T) {
	is := is.New(t)
	const n, k = 24, 3
	f := newSessionFixture(t)
	ctx := context.Background()
	errs := make([]error, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s, err := f.create(ctx, k)
			errs[i] = err
			if err == nil {
				ids[i] = s.ID
			}
		})
	}
	close(start)
	wg.Wait()

	var ok []string
	for i, err := range errs {
		if err == nil {
			ok = append(ok, ids[i])
			continue
		}
		limit, active, isQuota := quotaLimit(err)
		is.True(isQuota)                                                                                        // every refusal is the quota error
		is.Equal(limit, k)                                                                                      // at the configured limit
		is.Equal(active, k)                                                                                     // with the K sessions that got in
		is.True(strings.HasPrefix(err.Error(), fmt.Sprintf("Concurrent session limit reached (%d/%d).", k, k))) // the contract's message
	}
	is.Equal(len(ok), k) // exactly K creators got a session

	_, err := f.create(ctx, k)
	_, _, isQuota := quotaLimit(err)
	is.True(isQuota) // still full
	_, err = f.db.TerminateSession(ctx, f.userID, ok[0])
	is.NoErr(err) // terminate one
	_, err = f.create(ctx, k)
	is.NoErr(err) // a terminated session no longer counts
}
