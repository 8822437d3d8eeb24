package store

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/aod/aod/catalogue"
)

// Usage is a turn's model usage as the CLI reports it, stored per turn.
// Fields the CLI does not report are omitted. Token semantics follow the
// CLI: claude and opencode count cached input apart from input_tokens,
// codex counts it inside input_tokens.
type Usage struct {
	InputTokens              *int64   `json:"input_tokens,omitempty"`
	CachedInputTokens        *int64   `json:"cached_input_tokens,omitempty"`
	CacheCreationInputTokens *int64   `json:"cache_creation_input_tokens,omitempty"`
	OutputTokens             *int64   `json:"output_tokens,omitempty"`
	ReasoningOutputTokens    *int64   `json:"reasoning_output_tokens,omitempty"`
	CostUSD                  *float64 `json:"cost_usd,omitempty"`
	// Thread is the conversation's running total as the CLI reported it,
	// kept where the CLI reports totals (codex) so the next turn's own
	// share can be computed.
	Thread *Usage `json:"thread,omitempty"`
}

// Add sums o into u field by field (a field present in either is present).
func (u *Usage) Add(o *Usage) {
	addInt := func(dst **int64, v *int64) {
		if v == nil {
			return
		}
		if *dst == nil {
			*dst = new(int64)
		}
		**dst += *v
	}
	addInt(&u.InputTokens, o.InputTokens)
	addInt(&u.CachedInputTokens, o.CachedInputTokens)
	addInt(&u.CacheCreationInputTokens, o.CacheCreationInputTokens)
	addInt(&u.OutputTokens, o.OutputTokens)
	addInt(&u.ReasoningOutputTokens, o.ReasoningOutputTokens)
	if o.CostUSD != nil {
		if u.CostUSD == nil {
			u.CostUSD = new(float64)
		}
		*u.CostUSD += *o.CostUSD
	}
}

// Minus is u - prev for the token counts u has (a counter that went
// backwards, e.g. after a compaction, keeps u's value).
func (u *Usage) Minus(prev *Usage) *Usage {
	d := &Usage{CostUSD: u.CostUSD}
	sub := func(v, p *int64) *int64 {
		if v == nil {
			return nil
		}
		x := *v
		if p != nil && *p <= x {
			x -= *p
		}
		return &x
	}
	d.InputTokens = sub(u.InputTokens, prev.InputTokens)
	d.CachedInputTokens = sub(u.CachedInputTokens, prev.CachedInputTokens)
	d.CacheCreationInputTokens = sub(u.CacheCreationInputTokens, prev.CacheCreationInputTokens)
	d.OutputTokens = sub(u.OutputTokens, prev.OutputTokens)
	d.ReasoningOutputTokens = sub(u.ReasoningOutputTokens, prev.ReasoningOutputTokens)
	return d
}

// Cost sources: where a usage's cost_usd came from.
const (
	CostFromCLI   = "cli"
	CostFromTable = "price_table"
)

// UsageView is a turn's or a session's usage as the API shows it: the
// tokens, and the cost in US dollars, the CLI's own when it reported one,
// else priced from the catalogue's price table, else null.
type UsageView struct {
	InputTokens              int64    `json:"input_tokens"`
	OutputTokens             int64    `json:"output_tokens"`
	CacheReadInputTokens     *int64   `json:"cache_read_input_tokens,omitempty"`
	CacheCreationInputTokens *int64   `json:"cache_creation_input_tokens,omitempty"`
	ReasoningOutputTokens    *int64   `json:"reasoning_output_tokens,omitempty"`
	CostUSD                  *float64 `json:"cost_usd"`
	CostSource               *string  `json:"cost_source"`
}

// usageView reads a stored usage and prices it for a session of runtime
// and model; nil when none was stored.
func usageView(raw json.RawMessage, runtime, model string) *UsageView {
	if len(raw) == 0 {
		return nil
	}
	var u Usage
	if json.Unmarshal(raw, &u) != nil {
		return nil
	}
	val := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	v := &UsageView{InputTokens: val(u.InputTokens), OutputTokens: val(u.OutputTokens),
		CacheReadInputTokens: u.CachedInputTokens, CacheCreationInputTokens: u.CacheCreationInputTokens,
		ReasoningOutputTokens: u.ReasoningOutputTokens}
	if c, src := u.Cost(runtime, model); c != nil {
		v.CostUSD, v.CostSource = c, &src
	}
	return v
}

// Cost is what usage u of a session of runtime and model cost in US
// dollars, and where that comes from: the CLI's own figure, else the
// catalogue's price table; nil when neither knows.
func (u *Usage) Cost(runtime, model string) (*float64, string) {
	if u.CostUSD != nil {
		c := *u.CostUSD
		return &c, CostFromCLI
	}
	p, ok := catalogue.PriceOf(model)
	if !ok {
		return nil, ""
	}
	val := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	rt, _ := catalogue.Lookup(runtime)
	uncached, cached := val(u.InputTokens), val(u.CachedInputTokens)
	if rt.CachedInInput {
		uncached = max(uncached-cached, 0)
	}
	c := (float64(uncached)*p.Input + float64(cached)*p.CachedInput +
		float64(val(u.CacheCreationInputTokens))*p.CacheWrite + float64(val(u.OutputTokens))*p.Output) / 1e6
	return &c, CostFromTable
}

// SessionSpent is what the session's turns cost so far, in US dollars
// (turns with no known cost count as 0).
func (db *DB) SessionSpent(ctx context.Context, id string) (float64, error) {
	return spent(ctx, db.reader, id)
}

// spent sums the known costs of session id's turns.
func spent(ctx context.Context, q querier, id string) (float64, error) {
	var runtime, model string
	if err := q.QueryRowContext(ctx, `SELECT runtime, model FROM sessions WHERE id = ?`, id).Scan(&runtime, &model); err != nil {
		return 0, err
	}
	rows, err := q.QueryContext(ctx, `SELECT usage FROM session_turns WHERE session_id = ? AND usage IS NOT NULL`, id)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	total := 0.0
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return 0, err
		}
		if v := usageView(raw, runtime, model); v != nil && v.CostUSD != nil {
			total += *v.CostUSD
		}
	}
	return total, rows.Err()
}

// addView sums o into v: tokens, and the cost while every part has one
// (the source is the table's if any part came from it).
func (v *UsageView) addView(o *UsageView, first bool) {
	v.InputTokens += o.InputTokens
	v.OutputTokens += o.OutputTokens
	addPtr := func(dst **int64, p *int64) {
		if p != nil {
			if *dst == nil {
				*dst = new(int64)
			}
			**dst += *p
		}
	}
	addPtr(&v.CacheReadInputTokens, o.CacheReadInputTokens)
	addPtr(&v.CacheCreationInputTokens, o.CacheCreationInputTokens)
	addPtr(&v.ReasoningOutputTokens, o.ReasoningOutputTokens)
	switch {
	case first:
		v.CostUSD, v.CostSource = o.CostUSD, o.CostSource
	case v.CostUSD == nil || o.CostUSD == nil:
		v.CostUSD, v.CostSource = nil, nil // unknown in part: unknown
	default:
		c := *v.CostUSD + *o.CostUSD
		v.CostUSD = &c
		if *o.CostSource == CostFromTable {
			v.CostSource = o.CostSource
		}
	}
}

// AttachUsage fills in each session's Usage: the sum of its turns' usage,
// priced, nil when no turn reported any. One query for all of them.
func (db *DB) AttachUsage(ctx context.Context, sessions ...*Session) error {
	byID := make(map[string]*Session, len(sessions))
	for _, s := range sessions {
		byID[s.ID] = s
		s.Usage = nil
	}
	for start := 0; start < len(sessions); start += 500 {
		part := sessions[start:min(start+500, len(sessions))]
		args := make([]any, len(part))
		for i, s := range part {
			args[i] = s.ID
		}
		rows, err := db.reader.QueryContext(ctx, `SELECT session_id, usage FROM session_turns
			WHERE usage IS NOT NULL AND session_id IN (?`+strings.Repeat(",?", len(part)-1)+`) ORDER BY session_id, turn_number`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var raw []byte
			if err := rows.Scan(&id, &raw); err != nil {
				rows.Close()
				return err
			}
			s := byID[id]
			v := usageView(raw, s.Runtime, s.Model)
			if v == nil {
				continue
			}
			if s.Usage == nil {
				s.Usage = &UsageView{}
				s.Usage.addView(v, true)
			} else {
				s.Usage.addView(v, false)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}
