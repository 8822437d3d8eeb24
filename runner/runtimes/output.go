package runtimes

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/aod/aod/store"
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
	// Result is the CLI's final answer for the turn (claude's result,
	// codex's last agent message, opencode's and gemini's final text),
	// nil when it gave none.
	Result *string
}

// Usage is a turn's model usage as the CLI reports it (the store keeps it
// per turn and prices it; see store.Usage).
type Usage = store.Usage

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
