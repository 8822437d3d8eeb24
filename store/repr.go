package store

import (
	"fmt"
	"strings"
)

// PyRepr quotes s the way Python's repr() does, which the contract's
// messages use ("An active environment named 'x' already exists"): single
// quotes unless s holds a single quote and no double quote; backslashes and
// control characters escaped.
func PyRepr(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(q):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// PyList renders items the way the original's messages show a Python list
// of strings: ['a', 'b'].
func PyList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = PyRepr(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
