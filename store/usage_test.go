package store

import (
	"context"
	"encoding/json"
	"math"
	"testing"

	"github.com/matryer/is"
)

// A turn's usage is shown with the CLI's cost when it reported one, else
// priced from the catalogue's table (cached input apart from input where
// the CLI counts it inside), else without a cost; a session's totals keep
// a cost only while every turn has one.
func TestUsageViewPricing(t *testing.T) {
	is := is.New(t)
	cli := usageView(json.RawMessage(`{"input_tokens":100,"output_tokens":10,"cost_usd":0.5}`), "claude", "anthropic/claude-sonnet-4-6")
	is.Equal(*cli.CostUSD, 0.5)      // the CLI's own cost
	is.Equal(*cli.CostSource, "cli") // says so
	codex := usageView(json.RawMessage(`{"input_tokens":1000000,"cached_input_tokens":400000,"output_tokens":100000}`), "codex", "openai/gpt-5")
	// gpt-5: 600k uncached × $1.25/M + 400k cached × $0.125/M + 100k out × $10/M = 0.75 + 0.05 + 1.0
	is.True(math.Abs(*codex.CostUSD-1.8) < 1e-9) // priced from the table, cached input taken out of input
	is.Equal(*codex.CostSource, "price_table")   // and says so
	is.Equal(codex.InputTokens, int64(1000000))  // tokens as the CLI counted them
	is.Equal(*codex.CacheReadInputTokens, int64(400000))
	unknown := usageView(json.RawMessage(`{"input_tokens":5,"output_tokens":1}`), "codex", "openai/no-such-model")
	is.Equal(unknown.CostUSD, nil)                         // no price: no cost
	is.Equal(unknown.CostSource, nil)                      // and no source
	is.Equal(usageView(nil, "codex", "openai/gpt-5"), nil) // nothing reported: nothing shown

	total := &UsageView{}
	total.addView(cli, true)
	total.addView(codex, false)
	is.True(math.Abs(*total.CostUSD-2.3) < 1e-9) // the costs add up
	is.Equal(*total.CostSource, "price_table")   // the table priced part of it
	is.Equal(total.InputTokens, int64(1000100))  // and the tokens
	total.addView(unknown, false)
	is.Equal(total.CostUSD, nil) // a turn without a cost makes the total unknown
}

// A session whose turns' cost reaches its budget takes no more prompts.
func TestSessionBudget(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f := newEnvFixture(t)
	budget := 0.01
	s, err := f.db.CreateSession(ctx, f.userID, SessionInput{AgentID: f.agentID, Prompt: "one", Timeout: 60, BudgetUSD: &budget})
	is.NoErr(err)
	is.Equal(*s.BudgetUSD, 0.01) // the budget is kept
	turn := func(n int, cost string) {
		t.Helper()
		is.NoErr(f.db.SetProvisionState(ctx, s.ID, ProvisionDone))
		ok, err := f.db.StartTurn(ctx, s.ID, n)
		is.NoErr(err)
		is.True(ok)
		code := 0
		is.NoErr(f.db.FinishTurn(ctx, s.ID, n, TurnResult{ExitCode: &code, Usage: json.RawMessage(`{"cost_usd":` + cost + `}`)}))
	}
	turn(1, "0.004")
	_, err = f.db.PromptSession(ctx, f.userID, s.ID, "two", 60)
	is.NoErr(err) // under the budget: prompts go on
	turn(2, "0.007")
	got, err := f.db.GetSession(ctx, f.userID, s.ID)
	is.NoErr(err)
	is.True(got.BudgetExhausted) // 0.011 spent of 0.01
	_, err = f.db.PromptSession(ctx, f.userID, s.ID, "three", 60)
	is.Equal(ErrorCode(err), Conflict)
	is.Equal(ErrorMessage(err), "Session budget exhausted")                                       // no more prompts
	is.Equal(ErrorMessage(f.db.CheckPromptable(ctx, f.userID, s.ID)), "Session budget exhausted") // checked before a body is read too
}
