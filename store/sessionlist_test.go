package store

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// listFixture is two users' sessions with known prompts and states.
type listFixture struct {
	*envFixture
	otherUser, otherAgent, bobID string
}

func newListFixture(t *testing.T) *listFixture {
	t.Helper()
	f := &listFixture{envFixture: newEnvFixture(t)}
	ctx := context.Background()
	model, err := ResolveModel("shell", "", ShellModel)
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.db.CreateAgent(ctx, f.userID, AgentInput{Name: "second", Model: model})
	if err != nil {
		t.Fatal(err)
	}
	f.otherAgent = b.ID
	bob, err := f.db.EnsureUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	f.otherUser = bob.ID
	ba, err := f.db.CreateAgent(ctx, bob.ID, AgentInput{Name: "bobs", Model: model})
	if err != nil {
		t.Fatal(err)
	}
	f.bobID = f.start(t, bob.ID, ba.ID, "Fix the 100% CPU bug").ID
	return f
}

// start creates a pending session.
func (f *listFixture) start(t *testing.T, userID, agentID, prompt string) *Session {
	t.Helper()
	s, err := f.db.CreateSession(context.Background(), userID, SessionInput{AgentID: agentID, Prompt: prompt, Timeout: 60})
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	return s
}

// runTurn runs turn n of session id to its end with exit code 0 and usage
// (none when "").
func (f *listFixture) runTurn(t *testing.T, id string, n int, usage string) {
	t.Helper()
	ctx := context.Background()
	if err := f.db.SetProvisionState(ctx, id, ProvisionDone); err != nil {
		t.Fatal(err)
	}
	if ok, err := f.db.StartTurn(ctx, id, n); err != nil || !ok {
		t.Fatalf("start turn %d: %v %v", n, ok, err)
	}
	code := 0
	r := TurnResult{ExitCode: &code}
	if usage != "" {
		r.Usage = json.RawMessage(usage)
	}
	if err := f.db.FinishTurn(ctx, id, n, r); err != nil {
		t.Fatalf("finish turn %d: %v", n, err)
	}
}

func ids(list []*SessionSummary) []string {
	out := []string{}
	for _, s := range list {
		out = append(out, s.ID)
	}
	return out
}

// The session list filters by status, agent and a search of every turn's
// prompts (a plain, case-insensitive substring: % _ and \ are no
// wildcards), only ever among the user's own sessions, newest first, a
// page at a time; each row sums its turns.
func TestSessionSummaries(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newListFixture(t)
	cpu := f.start(t, f.userID, f.agentID, "Fix the 100% CPU bug")
	f.runTurn(t, cpu.ID, 1, `{"input_tokens":10,"output_tokens":2,"cost_usd":0.01}`)
	snake := f.start(t, f.userID, f.otherAgent, "rename snake_case names")
	decoy := f.start(t, f.userID, f.otherAgent, "rename snakeXcase names and 100 percent of a\\b")
	follow := f.start(t, f.userID, f.agentID, "first question")
	f.runTurn(t, follow.ID, 1, `{"cost_usd":0.002}`)
	_, err := f.db.PromptSession(ctx, f.userID, follow.ID, "then look at the LOGS", 60)
	is.NoErr(err) // a second turn: the session is pending again
	long := f.start(t, f.userID, f.agentID, strings.Repeat("é", PromptExcerpt)+"  tail\nmore")

	list := func(fl SessionFilter) []string {
		t.Helper()
		got, _, err := f.db.SessionSummaries(ctx, f.userID, fl)
		is.NoErr(err)
		return ids(got)
	}
	is.Equal(list(SessionFilter{}), []string{long.ID, follow.ID, decoy.ID, snake.ID, cpu.ID})                                         // every session, newest first, none of bob's
	is.Equal(list(SessionFilter{Statuses: []string{StatusCompleted}}), []string{cpu.ID})                                              // by status
	is.Equal(list(SessionFilter{Statuses: []string{StatusPending, StatusRunning}}), []string{long.ID, follow.ID, decoy.ID, snake.ID}) // several statuses, still newest first
	is.Equal(list(SessionFilter{AgentID: f.otherAgent}), []string{decoy.ID, snake.ID})                                                // by agent
	is.Equal(list(SessionFilter{AgentID: f.otherAgent, Statuses: []string{StatusCompleted}}), []string{})                             // both at once
	is.Equal(list(SessionFilter{Query: "100%"}), []string{cpu.ID})                                                                    // % is a plain character ("100 percent" does not match)
	is.Equal(list(SessionFilter{Query: "snake_case"}), []string{snake.ID})                                                            // and so is _ ("snakeXcase" does not match)
	is.Equal(list(SessionFilter{Query: `a\b`}), []string{decoy.ID})                                                                   // and \
	is.Equal(list(SessionFilter{Query: "%"}), []string{cpu.ID})                                                                       // a lone % matches only a %
	is.Equal(list(SessionFilter{Query: "fix THE"}), []string{cpu.ID})                                                                 // capitals don't matter
	is.Equal(list(SessionFilter{Query: "logs"}), []string{follow.ID})                                                                 // a later turn's prompt counts
	is.Equal(list(SessionFilter{Query: "rename", AgentID: f.agentID}), []string{})                                                    // with the other filters
	is.Equal(list(SessionFilter{IDs: []string{cpu.ID, f.bobID}}), []string{cpu.ID})                                                   // by id: another user's is left out
	is.Equal(list(SessionFilter{IDs: []string{}}), []string{})                                                                        // no ids, no sessions
	bobs, _, err := f.db.SessionSummaries(ctx, f.otherUser, SessionFilter{Query: "100%"})
	is.NoErr(err)
	is.Equal(ids(bobs), []string{f.bobID}) // bob sees only his own

	page, more, err := f.db.SessionSummaries(ctx, f.userID, SessionFilter{Limit: 2})
	is.NoErr(err)
	is.Equal(ids(page), []string{long.ID, follow.ID}) // the first page
	is.True(more)                                     // says more follow
	page, more, err = f.db.SessionSummaries(ctx, f.userID, SessionFilter{Limit: 2, Offset: 4})
	is.NoErr(err)
	is.Equal(ids(page), []string{cpu.ID}) // the last page
	is.True(!more)                        // and nothing after it

	_, _, err = f.db.SessionSummaries(ctx, f.userID, SessionFilter{Query: strings.Repeat("x", MaxPromptQuery+1)})
	is.Equal(ErrorCode(err), Invalid) // a search too long is refused
	_, _, err = f.db.SessionSummaries(ctx, f.userID, SessionFilter{IDs: make([]string, MaxSessionPage+1)})
	is.Equal(ErrorCode(err), Invalid) // and so are too many ids

	all, _, err := f.db.SessionSummaries(ctx, f.userID, SessionFilter{})
	is.NoErr(err)
	byID := map[string]*SessionSummary{}
	for _, s := range all {
		byID[s.ID] = s
	}
	c := byID[cpu.ID]
	is.Equal(c.AgentName, "sh")                     // the agent's name
	is.Equal(c.Turns, 1)                            // its turns
	is.True(c.StartedAt != nil && c.EndedAt != nil) // when its turns ran
	is.True(!c.EndedAt.Before(*c.StartedAt))        // in order
	is.Equal(*c.Usage.CostUSD, 0.01)                // the cost of its turns
	is.Equal(c.Prompt, "Fix the 100% CPU bug")      // its prompt
	is.True(!c.Live())                              // it has ended
	fo := byID[follow.ID]
	is.Equal(fo.Turns, 2)                   // two turns
	is.True(fo.Live() && fo.EndedAt == nil) // live again: its duration runs on
	is.Equal(fo.Prompt, "first question")   // the first turn's prompt
	is.Equal(*fo.Usage.CostUSD, 0.002)      // the cost so far
	sn := byID[snake.ID]
	is.True(sn.StartedAt == nil && sn.Usage == nil)                    // nothing ran: no duration, no cost
	is.Equal(byID[long.ID].Prompt, strings.Repeat("é", PromptExcerpt)) // cut to the excerpt, by characters
	is.True(byID[long.ID].PromptCut)                                   // and says so
	is.True(!c.PromptCut)                                              // a short one is whole
}

// The recently ended sessions come by when they last changed, most
// recent first.
func TestSessionSummariesByChange(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newListFixture(t)
	clock := time.Date(2030, 6, 10, 12, 0, 0, 0, time.UTC)
	f.db.now = func() time.Time { return clock }
	a := f.start(t, f.userID, f.agentID, "a")
	b := f.start(t, f.userID, f.agentID, "b")
	f.runTurn(t, b.ID, 1, "")
	clock = clock.Add(time.Minute)
	f.runTurn(t, a.ID, 1, "")
	got, _, err := f.db.SessionSummaries(ctx, f.userID, SessionFilter{Statuses: []string{StatusCompleted}, ByChange: true})
	is.NoErr(err)
	is.Equal(ids(got), []string{a.ID, b.ID}) // a ended last, though b is newer
}

// The spend of the last days sums the priced usage of the user's turns
// that ended in them, by day (UTC); older turns and other users' are left
// out, and turns with no known price are counted apart.
func TestRecentSpend(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newListFixture(t)
	clock := time.Date(2030, 6, 10, 12, 0, 0, 0, time.UTC)
	f.db.now = func() time.Time { return clock }

	empty, err := f.db.RecentSpend(ctx, f.userID, 7)
	is.NoErr(err)
	is.Equal(empty.Turns, 0)     // nothing yet
	is.Equal(len(empty.Days), 7) // but every day is there

	clock = time.Date(2030, 6, 2, 12, 0, 0, 0, time.UTC) // 8 days ago
	old := f.start(t, f.userID, f.agentID, "old")
	f.runTurn(t, old.ID, 1, `{"cost_usd":1}`)
	clock = time.Date(2030, 6, 3, 23, 59, 0, 0, time.UTC) // the day before the window
	edge := f.start(t, f.userID, f.agentID, "edge")
	f.runTurn(t, edge.ID, 1, `{"cost_usd":2}`)
	clock = time.Date(2030, 6, 4, 0, 1, 0, 0, time.UTC) // its first day
	first := f.start(t, f.userID, f.agentID, "first")
	f.runTurn(t, first.ID, 1, `{"cost_usd":0.25}`)
	clock = time.Date(2030, 6, 10, 9, 0, 0, 0, time.UTC) // today
	today := f.start(t, f.userID, f.agentID, "today")
	f.runTurn(t, today.ID, 1, `{"cost_usd":0.5}`)
	unpriced := f.start(t, f.userID, f.agentID, "unpriced")
	f.runTurn(t, unpriced.ID, 1, `{"input_tokens":10,"output_tokens":1}`) // the shell model has no price
	_, err = f.db.TerminateSession(ctx, f.userID, old.ID)
	is.NoErr(err)                              // the old session changes today: its old turn still is not counted
	f.runTurn(t, f.bobID, 1, `{"cost_usd":9}`) // bob's
	clock = time.Date(2030, 6, 10, 12, 0, 0, 0, time.UTC)

	sp, err := f.db.RecentSpend(ctx, f.userID, 7)
	is.NoErr(err)
	is.True(math.Abs(sp.TotalUSD-0.75) < 1e-9)                            // 0.25 + 0.5: the older turns are left out
	is.Equal(sp.Turns, 3)                                                 // the turns that reported usage
	is.Equal(sp.Unpriced, 1)                                              // one without a price
	is.Equal(len(sp.Days), 7)                                             // a row per day
	is.Equal(sp.Days[0].Day, time.Date(2030, 6, 4, 0, 0, 0, 0, time.UTC)) // oldest first
	is.Equal(sp.Days[0].USD, 0.25)                                        // the first day's
	is.Equal(sp.Days[6].USD, 0.5)                                         // today's
	is.Equal(sp.Days[6].Turns, 2)                                         // with the unpriced turn
	is.Equal(sp.MaxUSD, 0.5)                                              // the dearest day
	other, err := f.db.RecentSpend(ctx, f.otherUser, 7)
	is.NoErr(err)
	is.Equal(other.Turns, 1)      // bob's spend holds none of it
	is.Equal(other.TotalUSD, 9.0) // only his own
}
