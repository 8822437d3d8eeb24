package runtimes

import (
	"bytes"
	"encoding/json"
	"io"
)

// Parser reads a turn's stdout one line at a time (the CLIs print one
// JSON object per line) for what aod keeps about the turn. It never
// changes what is stored: it sees a copy of the bytes (see LineTee).
type Parser interface {
	// Line gets each complete line without its newline; lines that are
	// not JSON, or not an event it knows, are ignored.
	Line(b []byte)
	// Report is what the turn said, once its output has ended.
	Report() Report
}

// Report is what a CLI's output says about a turn.
type Report struct {
	// SessionID is the CLI's conversation id (codex thread_id, opencode
	// sessionID, claude/gemini session_id), "" when it printed none.
	SessionID string
	Usage     *Usage
	// Cumulative says Usage counts the whole conversation so far, not
	// this turn (codex's turn.completed after a resume).
	Cumulative bool
}

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

// maxParsedLine bounds the line a parser is given; longer lines (a huge
// tool result) are skipped: the events parsers need are small.
const maxParsedLine = 4 << 20

// LineTee passes every write through to W unchanged, then hands complete
// lines to P. Only the reader goroutine of one stream writes to it.
type LineTee struct {
	W    io.Writer
	P    Parser
	buf  []byte
	skip bool // inside a line longer than maxParsedLine
}

func (t *LineTee) Write(b []byte) (int, error) {
	n, err := t.W.Write(b)
	rest := b
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if !t.skip {
				t.buf = append(t.buf, rest...)
				if len(t.buf) > maxParsedLine {
					t.buf, t.skip = t.buf[:0], true
				}
			}
			break
		}
		if !t.skip {
			t.buf = append(t.buf, rest[:i]...)
			if len(t.buf) <= maxParsedLine {
				t.P.Line(t.buf)
			}
		}
		t.buf, t.skip = t.buf[:0], false
		rest = rest[i+1:]
	}
	return n, err
}

// Close hands over a last line that had no newline; call it once the
// output has ended.
func (t *LineTee) Close() {
	if len(t.buf) > 0 && !t.skip {
		t.P.Line(t.buf)
	}
	t.buf, t.skip = nil, false
}

// jsonLine decodes a line into v, reporting whether it was a JSON object.
func jsonLine(b []byte, v any) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	return json.Unmarshal(b, v) == nil
}
