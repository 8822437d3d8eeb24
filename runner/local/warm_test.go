package local

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// warmBackend turns lb's warm pool on and waits for its first sprites.
func warmBackend(t *testing.T, lb *Backend, size int) {
	t.Helper()
	lb.warm = newWarmPool(lb, size, slog.New(slog.DiscardHandler))
	lb.warm.start()
	t.Cleanup(lb.Close)
	waitWarm(t, lb, size)
}

// waitWarm waits until n warm sprites are parked.
func waitWarm(t *testing.T, lb *Backend, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lb.warm.mu.Lock()
		idle, failures := len(lb.warm.idle), lb.warm.failures
		lb.warm.mu.Unlock()
		if idle == n {
			return
		}
		if failures > 0 || time.Now().After(deadline) {
			t.Fatalf("%d warm sprites after 30s (%d failed builds), want %d", idle, failures, n)
		}
	}
}

func claimed(lb *Backend, name string) bool {
	lb.warm.mu.Lock()
	defer lb.warm.mu.Unlock()
	return lb.warm.held[name] != nil
}

// A new sprite's first command runs in a warm sprite's parked init, and is
// the same as a cold start in every way a session can see: its tree (the
// warm one, renamed), its uid range, its input, environment, directory and
// exit code, and its network policy, which the proxy applies from the
// session although the socket was made before anyone knew it.
func TestWarmSpriteRunsTheFirstCommand(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	up := hostServer(t, "127.0.0.2:0", "upstream")
	model := hostServer(t, "127.0.0.1:0", "fake model")
	lb, log := netBackend(t, mapDNS{"registry.test": "127.0.0.2", "evil.test": "127.0.0.2"}, "127.0.0.2/32")
	warmBackend(t, lb, 1)

	sp, err := lb.Create(context.Background(), "s1", sprite.Options{Network: sprite.Network{
		Limited: true, Hosts: []string{"registry.test"}, Models: []string{model},
	}})
	is.NoErr(err)
	is.True(claimed(lb, "s1")) // the new sprite took the warm one
	is.NoErr(sp.WriteFile(context.Background(), sprite.HomeDir+"/note", []byte("written before"), 0o644))

	var out, errOut bytes.Buffer
	p, err := sp.Start(context.Background(), sprite.ExecRequest{
		Argv: []string{"sh", "-c", fmt.Sprintf(`echo "$(pwd) $FOO $(cat) $(cat ~/note)"
read -r inner outer count < /proc/self/uid_map; echo "uid $(id -u) host $outer"
curl -s --max-time 5 http://registry.test:%[1]s/; echo
curl -s --max-time 5 http://evil.test:%[1]s/ | grep -o 'not allowed by this session.s network policy'
curl -s --max-time 5 http://%[2]s/; echo
echo "$(cd /proc/$$/fd && echo *)"
echo to-stderr >&2; exit 3`, portOf(up), model)},
		Dir:   sprite.WorkspaceDir,
		Env:   []string{"PATH=" + sprite.DefaultPath, "HOME=" + sprite.HomeDir, "FOO=bar"},
		Stdin: strings.NewReader("from stdin"), Stdout: &out, Stderr: &errOut,
	})
	is.NoErr(err)
	st, err := p.Wait()
	is.NoErr(err)
	is.True(!claimed(lb, "s1")) // used once
	is.Equal(st.Code, 3)
	is.Equal(errOut.String(), "to-stderr\n")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	is.Equal(len(lines), 6)
	is.Equal(lines[0], "/workspace bar from stdin written before")
	var home syscall.Stat_t
	is.NoErr(syscall.Lstat(filepath.Join(lb.root, "s1", "home"), &home))
	if os.Geteuid() == 0 {
		is.Equal(lines[1], "uid 0 host "+strconv.Itoa(int(home.Uid))) // the range its tree belongs to
		is.True(home.Uid >= uidBase)
	}
	is.Equal(lines[2], "upstream")                                     // the session's allowed host
	is.Equal(lines[3], "not allowed by this session's network policy") // the rest refused
	is.Equal(lines[4], "fake model")                                   // its model endpoint forwarded
	joined := strings.Join(log(), "\n")
	is.True(strings.Contains(joined, "s1 registry.test:"+portOf(up)+" true")) // recorded under the session's sprite
	is.True(strings.Contains(joined, "s1 evil.test:"+portOf(up)+" false"))

	// Later commands start cold in the same tree; the pool has refilled
	// with a tree of its own.
	code, later := run(t, sp, `cat ~/note; ls /aod; echo "$(cd /proc/$$/fd && echo *)"`)
	is.Equal(code, 0)
	is.True(strings.HasPrefix(later, "written before"))
	is.Equal(lines[5], lastLine(later)) // the same open files as a cold command's: none of the init's pipes
	waitWarm(t, lb, 1)
	entries, err := os.ReadDir(lb.root)
	is.NoErr(err)
	var warm []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), warmPrefix) {
			warm = append(warm, e.Name())
		}
	}
	is.Equal(len(warm), 1)
	is.True(warm[0] != warmPrefix+"1") // the first one is s1's now
}

// The pool builds the mounts and binds the last new sprite had: a sprite
// of another shape starts cold, the next one of that shape warm, with its
// mount in place.
func TestWarmPoolFollowsTheShape(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	requireBwrap(t)
	lb, err := newBackend(t.TempDir(), Limits{Processes: 1024, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	is.NoErr(err)
	is.NoErr(useBwrapT(t, lb))
	warmBackend(t, lb, 1)
	opts := sprite.Options{Mounts: []string{"/srv/repo"}}

	a, err := lb.Create(context.Background(), "a", opts)
	is.NoErr(err)
	is.True(!claimed(lb, "a")) // the warm one had no mount
	code, out := run(t, a, `touch /srv/repo/a && echo ok`)
	is.Equal(code, 0)
	is.Equal(out, "ok\n")

	waitWarm(t, lb, 1) // rebuilt with the mount
	b, err := lb.Create(context.Background(), "b", opts)
	is.NoErr(err)
	is.True(claimed(lb, "b"))
	code, out = run(t, b, `touch /srv/repo/b && ls /srv/repo`)
	is.Equal(code, 0)
	is.Equal(out, "b\n") // b's own mount, not a's
	_, err = os.Stat(filepath.Join(lb.root, "b", "mounts", "0", "b"))
	is.NoErr(err)
}

// A warm sprite nobody uses dies with its sprite or the backend, and a
// previous process's warm trees are swept at start.
func TestWarmSpritesLeaveNothing(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	requireBwrap(t)
	data := t.TempDir()
	lb, err := newBackend(data, Limits{Processes: 1024, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	is.NoErr(err)
	leftover := filepath.Join(lb.root, warmPrefix+"99", "home")
	is.NoErr(os.MkdirAll(leftover, 0o700))
	is.NoErr(useBwrapT(t, lb))
	_, err = os.Stat(leftover)
	is.True(os.IsNotExist(err)) // swept

	warmBackend(t, lb, 2)
	_, err = lb.Create(context.Background(), "c", sprite.Options{})
	is.NoErr(err)
	is.True(claimed(lb, "c"))
	lb.warm.mu.Lock()
	parked := lb.warm.held["c"].p.pid
	lb.warm.mu.Unlock()
	is.NoErr(lb.Delete(context.Background(), "c"))
	is.Equal(syscall.Kill(parked, 0), syscall.ESRCH) // its parked init is gone
	_, err = os.Stat(filepath.Join(lb.root, "c"))
	is.True(os.IsNotExist(err))

	waitWarm(t, lb, 2)
	lb.warm.mu.Lock()
	var pids []int
	for _, w := range lb.warm.idle {
		pids = append(pids, w.p.pid)
	}
	lb.warm.mu.Unlock()
	lb.Close()
	for _, pid := range pids {
		is.Equal(syscall.Kill(pid, 0), syscall.ESRCH) // every parked init is gone
	}
	entries, err := os.ReadDir(lb.root)
	is.NoErr(err)
	for _, e := range entries {
		is.True(!strings.HasPrefix(e.Name(), warmPrefix)) // and every warm tree
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
