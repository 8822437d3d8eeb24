package sse

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// shownKind says whether rows of kind k are shown (others are the runner's
// own markers).
func shownKind(k string) bool { return k == store.KindStage || k == store.KindOutput }

// EventJSON is a stored log row as the stream's data line carries it (the
// same bytes), false for rows the stream doesn't show.
func EventJSON(e *store.Event) ([]byte, bool) {
	frame, ok := appendFrame(nil, e)
	if !ok {
		return nil, false
	}
	i := bytes.Index(frame, []byte("data: "))
	return bytes.TrimRight(frame[i+len("data: "):], "\n"), true
}

// appendTurnStart appends the turn_start frame that goes before e, the
// first output row of its turn a stream sends. It has no id: line, so a
// client resuming from it still gets the output.
func appendTurnStart(b []byte, e *store.Event) []byte {
	j := jsonBuf{b: b}
	j.begin(0, "turn_start")
	j.num("id", e.ID)
	j.num("turn", int64(e.Turn))
	j.end()
	return j.b
}

// appendFrame appends the frame of a log row to b and reports whether the
// row is shown. Rows of kinds the stream doesn't know are the runner's own
// markers: skipped. (An output row's turn_start is the stream's to add: it
// depends on what the stream sent before.)
func appendFrame(b []byte, e *store.Event) ([]byte, bool) {
	j := jsonBuf{b: b}
	switch e.Kind {
	case store.KindStage:
		j.begin(e.ID, "stage")
		j.num("id", e.ID)
		j.str("stage", e.Stage)
		j.str("state", e.State)
		if e.DurationMS != nil && (e.State == store.StageDone || e.State == store.StageFailed) {
			j.num("duration_ms", *e.DurationMS)
		}
		if e.Data != "" {
			// Failures say why; aod's started/done rows may say what the
			// stage is doing (e.g. a first-time runtime install).
			j.str("message", e.Data)
		}
		j.end()
	case store.KindOutput:
		j.begin(e.ID, "output")
		j.num("id", e.ID)
		j.str("stream", e.Stream)
		j.str("data", e.Data)
		if e.Turn > 0 {
			j.num("turn", int64(e.Turn))
		} else {
			j.null("turn")
		}
		j.end()
	default:
		return b, false
	}
	return j.b, true
}

// jsonBuf writes SSE frames holding flat JSON objects the way Python's
// json.dumps does (", " and ": " separators, ensure_ascii), with "type"
// first. encoding/json can't put a key first in a map or space its output,
// and post-processing its bytes would risk touching string contents.
type jsonBuf struct{ b []byte }

// begin starts a frame; idLine > 0 adds the "id:" line resumes rely on.
func (j *jsonBuf) begin(idLine int64, typ string) {
	if idLine > 0 {
		j.b = append(j.b, "id: "...)
		j.b = strconv.AppendInt(j.b, idLine, 10)
		j.b = append(j.b, '\n')
	}
	j.b = append(j.b, `data: {"type": `...)
	j.b = appendString(j.b, typ)
}

func (j *jsonBuf) key(k string) {
	j.b = append(j.b, ", "...)
	j.b = appendString(j.b, k)
	j.b = append(j.b, ": "...)
}

func (j *jsonBuf) str(k, v string) {
	j.key(k)
	j.b = appendString(j.b, v)
}

func (j *jsonBuf) num(k string, n int64) {
	j.key(k)
	j.b = strconv.AppendInt(j.b, n, 10)
}

func (j *jsonBuf) null(k string) {
	j.key(k)
	j.b = append(j.b, "null"...)
}

func (j *jsonBuf) end() { j.b = append(j.b, "}\n\n"...) }

const hexDigits = "0123456789abcdef"

// appendString quotes s as Python's json.dumps(ensure_ascii=True) does:
// only printable ASCII passes through, everything else is escaped, astral
// characters as surrogate pairs. Invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			if c < utf8.RuneSelf {
				b = appendU(b, rune(c))
				break
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r >= 0x10000 {
				r -= 0x10000
				b = appendU(b, 0xd800|(r>>10)&0x3ff)
				b = appendU(b, 0xdc00|r&0x3ff)
			} else {
				b = appendU(b, r)
			}
			i += size
			start = i
			continue
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
