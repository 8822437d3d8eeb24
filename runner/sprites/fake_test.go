package sprites_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprites"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/matryer/is"
)

// fakeClient starts a fake with o and returns a client for it with short
// retry and keepalive timings.
func fakeClient(t *testing.T, o spritesfake.Options, mod ...func(*sprites.Config)) (*spritesfake.Fake, *sprites.Client) {
	t.Helper()
	f := spritesfake.New(t, o)
	cfg := sprites.Config{
		URL:            f.URL(),
		Token:          f.Token(),
		CallTimeout:    10 * time.Second,
		RetryBaseDelay: 10 * time.Millisecond,
		RetryMaxDelay:  3 * time.Second,
		PingInterval:   100 * time.Millisecond,
		DeadAfter:      2 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	return f, sprites.New(cfg)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFakeLifecycle(t *testing.T) {
	is := is.New(t)
	f, c := fakeClient(t, spritesfake.Options{}, func(c *sprites.Config) { c.ListPageSize = 2 })
	ctx := ctxT(t)
	for _, n := range []string{"aod-a", "aod-b", "aod-c", "aod-d", "aod-e", "other"} {
		s, err := c.Create(ctx, n)
		is.NoErr(err)       // create
		is.Equal(s.Name, n) // named
		is.True(s.ID != "") // with an id
	}
	s, err := c.Get(ctx, "aod-c")
	is.NoErr(err)                  // get
	is.Equal(s.Name, "aod-c")      // the sprite
	is.True(!s.CreatedAt.IsZero()) // created_at read
	is.True(s.Status != "")        // status read

	list, err := c.List(ctx, "aod-")
	is.NoErr(err) // list
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	is.Equal(names, []string{"aod-a", "aod-b", "aod-c", "aod-d", "aod-e"}) // every page, by prefix
	is.True(f.Requests("list") >= 3)                                       // pages of two

	is.NoErr(c.Delete(ctx, "aod-c")) // delete
	_, err = c.Get(ctx, "aod-c")
	is.True(sprites.IsNotFound(err)) // gone
	is.NoErr(c.Delete(ctx, "aod-c")) // deleting again is success
	f.Vanish("aod-d")
	_, err = c.Get(ctx, "aod-d")
	is.True(sprites.IsNotFound(err)) // vanished behind our back

	is.NoErr(c.SetNetworkPolicy(ctx, "aod-a", []sprites.PolicyRule{
		{Domain: "api.anthropic.com", Action: "allow"}, {Include: "defaults"}})) // policy
	pol := f.Policy("aod-a")
	is.Equal(len(pol), 2)                           // two rules stored
	is.Equal(pol[0]["domain"], "api.anthropic.com") // domain rule
	is.Equal(pol[1]["include"], "defaults")         // include rule
	rules, err := c.NetworkPolicy(ctx, "aod-a")
	is.NoErr(err)                          // read back
	is.Equal(rules[1].Include, "defaults") // same rules
}

func TestFakeCapacity(t *testing.T) {
	is := is.New(t)
	f, c := fakeClient(t, spritesfake.Options{MaxSprites: 1})
	ctx := ctxT(t)
	_, err := c.Create(ctx, "one")
	is.NoErr(err) // under the limit
	_, err = c.Create(ctx, "two")
	_, ok := sprites.Capacity(err)
	is.True(ok)                       // over the concurrent limit
	is.Equal(f.Requests("create"), 2) // not retried
	is.NoErr(c.Delete(ctx, "one"))

	f.Inject(spritesfake.Fault{Op: "create", Status: 429, Code: "sprite_creation_rate_limited", RetryAfter: 2 * time.Second})
	_, err = c.Create(ctx, "three")
	wait, ok := sprites.Capacity(err)
	is.True(ok)                   // rate limited
	is.Equal(wait, 2*time.Second) // Retry-After passed on
	var e *sprites.APIError
	is.True(errors.As(err, &e))                      // an APIError
	is.Equal(e.Code, "sprite_creation_rate_limited") // its code
	_, err = c.Create(ctx, "three")
	is.NoErr(err) // the caller's later try works
}

func TestFakeRetries(t *testing.T) {
	is := is.New(t)
	f, c := fakeClient(t, spritesfake.Options{})
	ctx := ctxT(t)
	_, err := c.Create(ctx, "s")
	is.NoErr(err) // create

	f.Inject(spritesfake.Fault{Op: "get", Status: 503, Times: 2})
	_, err = c.Get(ctx, "s")
	is.NoErr(err)                  // a 5xx GET is retried
	is.Equal(f.Requests("get"), 3) // twice

	f.Inject(spritesfake.Fault{Op: "create", Status: 500})
	s, err := c.Create(ctx, "t")
	is.NoErr(err)         // a 5xx create is retried
	is.Equal(s.Name, "t") // the sprite

	f.Inject(spritesfake.Fault{Op: "fs.write", Status: 502})
	is.NoErr(c.WriteFile(ctx, "s", "/tmp/x", []byte("x"), 0o644)) // a 5xx write is retried
	is.Equal(f.Requests("fs.write"), 2)                           // once
}

func TestFakeFiles(t *testing.T) {
	is := is.New(t)
	f, c := fakeClient(t, spritesfake.Options{})
	ctx := ctxT(t)
	_, err := c.Create(ctx, "s")
	is.NoErr(err) // create

	p := "/home/sprite/a/b/c.txt"
	is.NoErr(c.WriteFile(ctx, "s", p, []byte("hello"), 0o600)) // write, with parents
	host := filepath.Join(f.SpriteDir("s"), p)
	fi, err := os.Stat(host)
	is.NoErr(err)                                  // on the fake's disk
	is.Equal(fi.Mode().Perm(), fs.FileMode(0o600)) // with the mode
	b, err := c.ReadFile(ctx, "s", p)
	is.NoErr(err)                // read
	is.Equal(string(b), "hello") // round trip

	big := bytes.Repeat([]byte("0123456789"), 100_000)
	is.NoErr(c.WriteFile(ctx, "s", "/workspace/big", big, 0o644)) // a megabyte
	rc, err := c.OpenFile(ctx, "s", "/workspace/big")
	is.NoErr(err) // streamed
	got, err := io.ReadAll(rc)
	rc.Close()
	is.NoErr(err)                  // read to the end
	is.True(bytes.Equal(got, big)) // same bytes

	is.NoErr(c.Chmod(ctx, "s", p, 0o755, false)) // chmod
	fi, err = os.Stat(host)
	is.NoErr(err)
	is.Equal(fi.Mode().Perm(), fs.FileMode(0o755)) // changed

	list, err := c.ListDir(ctx, "s", "/home/sprite/a", true)
	is.NoErr(err) // list
	var found *sprites.Entry
	for i := range list {
		if list[i].Path == p {
			found = &list[i]
		}
	}
	is.True(found != nil)                           // the file is listed
	is.Equal(found.Name, "c.txt")                   // name
	is.Equal(found.Size, int64(5))                  // size
	is.Equal(found.Mode.Perm(), fs.FileMode(0o755)) // mode
	is.True(!found.IsDir)                           // a file
	is.True(!found.ModTime.IsZero())                // modTime

	is.NoErr(c.Remove(ctx, "s", "/home/sprite/a", true)) // remove a tree
	_, err = c.ReadFile(ctx, "s", p)
	is.True(errors.Is(err, fs.ErrNotExist))              // ENOENT
	is.NoErr(c.Remove(ctx, "s", "/home/sprite/a", true)) // removing again is success
	_, err = c.ListDir(ctx, "s", "/nowhere", false)
	is.True(errors.Is(err, fs.ErrNotExist)) // listing a missing directory
}

func TestFakeExec(t *testing.T) {
	spritesfake.RequireExec(t)
	is := is.New(t)
	_, c := fakeClient(t, spritesfake.Options{})
	ctx := ctxT(t)
	_, err := c.Create(ctx, "s")
	is.NoErr(err) // create

	e, err := c.Exec(ctx, "s", sprites.ExecOptions{
		Argv: []string{"sh", "-c", `echo out "$FOO" "$(pwd)"; echo err >&2; exit 3`},
		Dir:  "/workspace", Env: []string{"FOO=bar", "PATH=/usr/bin:/bin"}})
	is.NoErr(err)               // exec
	is.True(e.SessionID() >= 0) // session_info seen
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code, err := e.Wait(&stdout, &stderr)
	is.NoErr(err)                                     // exited
	is.Equal(code, 3)                                 // exit code
	is.Equal(stdout.String(), "out bar /workspace\n") // stdout, env and dir applied
	is.Equal(stderr.String(), "err\n")                // stderr
	is.True(time.Since(start) < 5*time.Second)        // no wait for the server's close

	e, err = c.Exec(ctx, "s", sprites.ExecOptions{Argv: []string{"sh", "-c", "tr a-z A-Z; echo done"}, Stdin: true})
	is.NoErr(err) // exec with stdin
	go func() {
		io.WriteString(e.Stdin(), "hello ")
		io.WriteString(e.Stdin(), strings.Repeat("x", 100_000))
		e.Stdin().Close()
	}()
	stdout.Reset()
	code, err = e.Wait(&stdout, nil)
	is.NoErr(err)                                                             // exited
	is.Equal(code, 0)                                                         // after EOF
	is.Equal(stdout.String(), "HELLO "+strings.Repeat("X", 100_000)+"done\n") // stdin, then EOF

	sessions, err := c.ListExec(ctx, "s")
	is.NoErr(err)                // list sessions
	is.Equal(len(sessions), 2)   // both
	is.True(!sessions[0].Active) // finished
}

func TestFakeSignal(t *testing.T) {
	spritesfake.RequireExec(t)
	for _, tc := range []struct {
		name  string
		caps  []string
		kills int
	}{
		{"in band", nil, 0},
		{"kill endpoint", []string{}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			f, c := fakeClient(t, spritesfake.Options{Capabilities: tc.caps})
			ctx := ctxT(t)
			_, err := c.Create(ctx, "s")
			is.NoErr(err) // create
			e, err := c.Exec(ctx, "s", sprites.ExecOptions{Argv: []string{"sh", "-c", "echo ready; exec sleep 60"}})
			is.NoErr(err)                                        // exec
			is.Equal(len(e.Capabilities()) == 0, tc.caps != nil) // advertised or not
			ready := make(chan struct{})
			done := make(chan struct{})
			var code int
			var werr error
			go func() {
				defer close(done)
				code, werr = e.Wait(&signalWhen{ready: ready}, nil)
			}()
			<-ready
			is.NoErr(e.Signal(ctx, "TERM")) // signalled
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the command did not end") // TERM reached it
			}
			is.NoErr(werr)                         // exited
			is.Equal(code, 143)                    // by SIGTERM
			is.Equal(f.Requests("kill"), tc.kills) // the kill endpoint only without the capability
		})
	}
}

// signalWhen closes ready at the first output.
type signalWhen struct {
	ready chan struct{}
	done  bool
}

func (w *signalWhen) Write(p []byte) (int, error) {
	if !w.done {
		w.done = true
		close(w.ready)
	}
	return len(p), nil
}

func TestFakeKill(t *testing.T) {
	spritesfake.RequireExec(t)
	is := is.New(t)
	_, c := fakeClient(t, spritesfake.Options{})
	ctx := ctxT(t)
	_, err := c.Create(ctx, "s")
	is.NoErr(err) // create
	e, err := c.Exec(ctx, "s", sprites.ExecOptions{Argv: []string{"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"}})
	is.NoErr(err) // exec
	ready := make(chan struct{})
	done := make(chan struct{})
	var code int
	go func() {
		defer close(done)
		code, _ = e.Wait(&signalWhen{ready: ready}, nil)
	}()
	<-ready
	sessions, err := c.ListExec(ctx, "s")
	is.NoErr(err)                                                           // list
	is.Equal(len(sessions), 1)                                              // one session
	is.True(sessions[0].Active)                                             // running
	is.Equal(sessions[0].ID, e.SessionID())                                 // ours
	is.NoErr(c.Kill(ctx, "s", e.SessionID(), "TERM", 300*time.Millisecond)) // escalates past the ignored TERM
	<-done
	is.Equal(code, 137)                                  // SIGKILLed
	is.NoErr(c.Kill(ctx, "s", e.SessionID(), "TERM", 0)) // killing a finished session is success
}

func TestFakeDropAndAttach(t *testing.T) {
	spritesfake.RequireExec(t)
	is := is.New(t)
	f, c := fakeClient(t, spritesfake.Options{})
	ctx := ctxT(t)
	_, err := c.Create(ctx, "s")
	is.NoErr(err) // create
	f.Inject(spritesfake.Fault{Op: "exec", DropAfterFrames: 2})
	e, err := c.Exec(ctx, "s", sprites.ExecOptions{
		Argv:       []string{"sh", "-c", "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done; exit 4"},
		Detachable: true, MaxRunAfterDisconnect: 30 * time.Second})
	is.NoErr(err) // exec
	var first bytes.Buffer
	_, err = e.Wait(&first, nil)
	is.True(errors.Is(err, sprites.ErrDisconnected)) // dropped mid-stream
	is.True(first.Len() > 0)                         // after some output
	is.True(first.String() != "1\n2\n3\n4\n5\n")     // but not all of it

	a, err := c.Attach(ctx, "s", e.SessionID())
	is.NoErr(err)                          // attach
	is.Equal(a.SessionID(), e.SessionID()) // the same session
	var all bytes.Buffer
	code, err := a.Wait(&all, nil)
	is.NoErr(err)                                            // to the exit
	is.Equal(code, 4)                                        // exit code
	is.Equal(all.String(), "1\n2\n3\n4\n5\n")                // replayed from the start
	is.True(strings.HasPrefix(all.String(), first.String())) // the dropped output is a prefix
}
