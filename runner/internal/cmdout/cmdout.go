// Package cmdout turns the raw bytes commands write into the text aod
// keeps of them: valid UTF-8 (what the event log stores) and the tail of a
// failed command's output for its error message. The runner (output
// events, provisioning scripts, skills) and the npm installer in runtimes
// both need exactly this; it lives apart so neither imports the other.
package cmdout

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Text converts b to a string, replacing each invalid byte with U+FFFD.
func Text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 16)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

// Tail keeps the last Max bytes written to it; safe for concurrent writes
// (a command's stdout and stderr may share one).
type Tail struct {
	Max int

	mu  sync.Mutex
	buf []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Last is the end of what was written as text, at most n characters.
func (t *Tail) Last(n int) string {
	t.mu.Lock()
	s := Text(t.buf)
	t.mu.Unlock()
	return lastRunes(s, n)
}

// lastRunes is the end of s, at most n characters.
func lastRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[len(r)-n:])
}
