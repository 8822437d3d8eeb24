// Package cmdout turns the raw bytes commands write into the text aod
// keeps of them: valid UTF-8 (what the event log stores), the tail of a
// failed command's output for its error message, a bounded log of both
// ends, and text with a session's secrets redacted. The runner (output
// events, provisioning scripts, skills) and the npm installer in runtimes
// both need exactly this; it lives apart so neither imports the other.
package cmdout

import (
	"slices"
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
	return LastRunes(s, n)
}

// LastRunes is the end of s, at most n characters.
func LastRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[len(r)-n:])
}

// Bounded keeps the first Head and the last Tail bytes written to it and
// counts the bytes between them that it let go; safe for concurrent writes.
// Memory stays within Head + 2*Tail bytes.
type Bounded struct {
	Head, Tail int

	mu      sync.Mutex
	head    []byte
	tail    []byte // its last Tail bytes are the tail
	omitted int64
}

func (b *Bounded) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.Head - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - b.Tail; over > b.Tail {
		// Drop in bulk once twice the tail is held: each byte is moved
		// a bounded number of times, however small the writes.
		b.omitted += int64(over)
		b.tail = append(b.tail[:0], b.tail[over:]...)
	}
	return n, nil
}

// Text is what was kept, as text. When nothing was let go, all that was
// written is in head and omitted is 0. Otherwise head and tail are the two
// ends, each cut on a character boundary, and omitted counts the bytes
// between them.
func (b *Bounded) Text() (head, tail string, omitted int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, t := b.head, b.tail
	omitted = b.omitted
	if over := len(t) - b.Tail; over > 0 {
		t, omitted = t[over:], omitted+int64(over)
	}
	if omitted == 0 {
		return Text(append(append([]byte{}, h...), t...)), "", 0
	}
	// Characters the cuts split are dropped whole.
	cut := len(h)
	for i := len(h) - 1; i >= 0 && i >= len(h)-utf8.UTFMax; i-- {
		if utf8.RuneStart(h[i]) {
			if !utf8.FullRune(h[i:]) {
				cut = i
			}
			break
		}
	}
	skip := 0
	for skip < len(t) && skip < utf8.UTFMax && !utf8.RuneStart(t[skip]) {
		skip++
	}
	omitted += int64(len(h) - cut + skip)
	return Text(h[:cut]), Text(t[skip:]), omitted
}

// Redacted stands in for a secret's value in text aod keeps.
const Redacted = "[redacted]"

// MinSecretLen is the shortest value a Redactor replaces. A flag such as
// DEBUG=1 would otherwise blank every digit of the output, and a fragment
// that short gives nothing away.
const MinSecretLen = 4

// Redactor replaces the values of a session's secrets (its env vars and
// repository tokens) in text kept from its commands. A nil Redactor
// replaces nothing.
type Redactor struct {
	secrets []string // longest first
	r       *strings.Replacer
}

// NewRedactor redacts every value of at least MinSecretLen bytes; nil when
// there is none.
func NewRedactor(values ...string) *Redactor {
	var secrets []string
	for _, v := range values {
		if len(v) >= MinSecretLen && !slices.Contains(secrets, v) {
			secrets = append(secrets, v)
		}
	}
	if len(secrets) == 0 {
		return nil
	}
	// Longest first: the replacer tries its pairs in order, so a secret
	// that contains another is replaced whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, Redacted)
	}
	return &Redactor{secrets: secrets, r: strings.NewReplacer(pairs...)}
}

// Redact replaces every secret in s with Redacted. cutStart and cutEnd
// say s was cut out of longer output there: a secret the cut split leaves
// a fragment at that edge, which is dropped too (from MinSecretLen bytes).
func (r *Redactor) Redact(s string, cutStart, cutEnd bool) string {
	if r == nil {
		return s
	}
	s = r.r.Replace(s)
	for _, sec := range r.secrets {
		for k := len(sec) - 1; cutEnd && k >= MinSecretLen; k-- {
			if strings.HasSuffix(s, sec[:k]) {
				s = s[:len(s)-k]
				break
			}
		}
		for k := len(sec) - 1; cutStart && k >= MinSecretLen; k-- {
			if strings.HasPrefix(s, sec[len(sec)-k:]) {
				s = s[k:]
				break
			}
		}
	}
	return s
}
