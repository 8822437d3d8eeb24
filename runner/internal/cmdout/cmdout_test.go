package cmdout_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/matryer/is"
)

func TestBounded(t *testing.T) {
	tests := []struct {
		name        string
		head, tail  int
		writes      []string
		wantHead    string
		wantTail    string
		wantOmitted int64
	}{
		{"nothing", 4, 4, nil, "", "", 0},
		{"within the head", 4, 4, []string{"ab", "c"}, "abc", "", 0},
		{"head and tail meet", 4, 4, []string{"abcd", "efgh"}, "abcdefgh", "", 0},
		{"one byte too many", 4, 4, []string{"abcdefghi"}, "abcd", "fghi", 1},
		{"many small writes", 2, 3, strings.Split("abcdefghijklmnopqrstuvwxyz", ""), "ab", "xyz", 21},
		{"no head", 0, 3, []string{"abcdef", "gh"}, "", "fgh", 5},
		{"characters the cuts split are dropped whole", 4, 4, []string{"abc\u00e9", "xx", "\u00e9xyz"}, "abc", "xyz", 6},
		{"invalid bytes become U+FFFD", 8, 8, []string{"a\xffb"}, "a\uFFFDb", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			b := &cmdout.Bounded{Head: tt.head, Tail: tt.tail}
			for _, w := range tt.writes {
				n, err := b.Write([]byte(w))
				is.NoErr(err)       // writes never fail
				is.Equal(n, len(w)) // and take everything
			}
			head, tail, omitted := b.Text()
			is.Equal(head, tt.wantHead)       // the first bytes (everything when nothing was left out)
			is.Equal(tail, tt.wantTail)       // the last bytes
			is.Equal(omitted, tt.wantOmitted) // what was left out between
		})
	}
}

func TestBoundedConcurrentWrites(t *testing.T) {
	is := is.New(t)
	b := &cmdout.Bounded{Head: 10, Tail: 10}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("xyz"))
			}
		})
	}
	wg.Wait()
	head, tail, omitted := b.Text()
	is.Equal(len(head)+len(tail)+int(omitted), 8*100*3) // every byte is kept or counted
	is.Equal(len(head), 10)                             // the head is full
	is.Equal(len(tail), 10)                             // and so is the tail
}

func TestRedactor(t *testing.T) {
	const R = cmdout.Redacted
	tests := []struct {
		name             string
		secrets          []string
		in               string
		cutStart, cutEnd bool
		want             string
	}{
		{"every occurrence", []string{"s3cret"}, "a s3cret and s3crets", false, false, "a " + R + " and " + R + "s"},
		{"the longer of two that overlap first", []string{"token", "token-long"}, "token-long token", false, false, R + " " + R},
		{"values too short are left alone", []string{"1", "abc", ""}, "1 abc", false, false, "1 abc"},
		{"multi-line values", []string{"-----BEGIN KEY-----\nMIIB\n"}, "x-----BEGIN KEY-----\nMIIB\ny", false, false, "x" + R + "y"},
		{"a secret's start at a cut end", []string{"supersecret"}, "log ends with super", false, true, "log ends with "},
		{"a secret's end at a cut start", []string{"supersecret"}, "rsecret then the log", true, false, " then the log"},
		{"no cut, no trimming", []string{"supersecret"}, "rsecret super", false, false, "rsecret super"},
		{"fragments shorter than MinSecretLen stay", []string{"supersecret"}, "ret log sup", true, true, "ret log sup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := is.New(t)
			r := cmdout.NewRedactor(tt.secrets...)
			is.Equal(r.Redact(tt.in, tt.cutStart, tt.cutEnd), tt.want) // secrets replaced, fragments at cuts dropped
		})
	}
	t.Run("none", func(t *testing.T) {
		is := is.New(t)
		r := cmdout.NewRedactor("", "ab")
		is.True(r == nil)                                // nothing worth redacting: no redactor
		is.Equal(r.Redact("ab cd", true, true), "ab cd") // and a nil one changes nothing
	})
}
