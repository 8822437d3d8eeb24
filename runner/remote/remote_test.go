package remote

import (
	"bytes"
	"testing"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/runner/sprites"
	"github.com/matryer/is"
)

// A limited network allows its hosts and the model API's host (without
// its port), once each, then denies everything; unrestricted is the
// service's defaults.
func TestPolicy(t *testing.T) {
	is := is.New(t)
	is.Equal(policy(sprite.Network{}), []sprites.PolicyRule{{Include: "defaults"}})
	got := policy(sprite.Network{Limited: true, Hosts: []string{"api.example.com", "*.github.com", "api.example.com"},
		Models: []string{"api.anthropic.com:443", "127.0.0.1:8778"}})
	is.Equal(got, []sprites.PolicyRule{
		{Domain: "api.example.com", Action: "allow"}, {Domain: "*.github.com", Action: "allow"},
		{Domain: "api.anthropic.com", Action: "allow"}, {Domain: "127.0.0.1", Action: "allow"},
		{Domain: "*", Action: "deny"},
	})
}

// After a re-attach the service replays a stream from its start: what was
// delivered is skipped, the rest passes on, in writes of at most 32 KiB.
func TestSkipWriter(t *testing.T) {
	is := is.New(t)
	var out bytes.Buffer
	w := &skipWriter{w: &out}
	w.Write([]byte("hello "))
	w.Write([]byte("wor"))
	w.rewind() // attached again: the replay starts over
	w.Write([]byte("hel"))
	w.Write([]byte("lo world"))
	w.Write([]byte("!"))
	is.Equal(out.String(), "hello world!") // each byte once
	is.Equal(w.seen, int64(12))

	resumed := &skipWriter{w: &out, seen: 6} // taken up after a restart, 6 bytes stored
	out.Reset()
	resumed.Write([]byte("hello world!"))
	is.Equal(out.String(), "world!")

	var sizes []int
	big := &skipWriter{w: writerFunc(func(p []byte) { sizes = append(sizes, len(p)) })}
	big.Write(make([]byte, 80<<10))
	is.Equal(sizes, []int{32 << 10, 32 << 10, 16 << 10})
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// The agent CLIs' shared mount point lives in the Sprite's home; every
// other path is the VM's own. The files API shows only the sprite's trees.
func TestPaths(t *testing.T) {
	is := is.New(t)
	s := &remoteSprite{mounts: []string{"/repo"}}
	is.Equal(s.Path("/aod/runtimes/claude@1/node_modules/.bin"), "/home/sprite/.aod/runtimes/claude@1/node_modules/.bin")
	is.Equal(s.Path("/aod/runtimesx"), "/aod/runtimesx")
	is.Equal(s.Path("/home/sprite/../sprite/x"), "/home/sprite/x")
	for p, want := range map[string]bool{"/home/sprite": true, "/home/sprite/a": true, "/workspace/x": true, "/tmp": true,
		"/repo/src": true, "/etc/passwd": false, "/home/spritex": false, "/": false, "/repository": false} {
		is.Equal(s.inSprite(p), want) // (see p)
	}
}
