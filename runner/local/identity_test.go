package local

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// run runs a shell script in sp, with env added to the basics, and returns
// its exit code and output.
func run(t *testing.T, sp sprite.Sprite, script string, env ...string) (int, string) {
	t.Helper()
	var out lockedBuffer // stdout and stderr are copied by goroutines of their own
	p, err := sp.Start(context.Background(), sprite.ExecRequest{
		Argv: []string{"sh", "-c", script},
		Env:  append([]string{"PATH=" + sprite.DefaultPath, "HOME=" + sprite.HomeDir}, env...), Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return st.Code, out.String()
}

// lockedBuffer is a buffer two writers may share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// requireRootBwrap is for the tests of the uid ranges: they exist only when
// aod runs as root (as CI does).
func requireRootBwrap(t *testing.T) *Backend {
	t.Helper()
	requireBwrap(t)
	if os.Geteuid() != 0 {
		t.Skip("sprite uid ranges are made only when aod runs as root; this test runs as uid " + strconv.Itoa(os.Geteuid()))
	}
	lb, err := newBackend(t.TempDir(), Limits{Processes: 1024, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := useBwrapT(t, lb); err != nil {
		t.Fatal(err)
	}
	return lb
}

// Inside, a sprite's processes are root; on the host they are the first
// uid of a range of their own, different for each sprite and kept across
// a restart of the server.
func TestEachSpriteIsItsOwnUnprivilegedRoot(t *testing.T) {
	t.Parallel()
	lb := requireRootBwrap(t)
	is := is.New(t)
	ctx := context.Background()
	a, err := lb.Create(ctx, "a", sprite.Options{})
	is.NoErr(err) // sprite a
	b, err := lb.Create(ctx, "b", sprite.Options{})
	is.NoErr(err) // sprite b
	uidOf := func(sp sprite.Sprite) string {
		code, out := run(t, sp, `echo "$(id -u) $(awk '{print $2, $3}' /proc/self/uid_map)"; echo made > ~/made`)
		is.Equal(code, 0) // it runs
		return strings.TrimSpace(out)
	}
	ua, ub := uidOf(a), uidOf(b)
	is.True(strings.HasPrefix(ua, "0 ")) // root inside
	is.True(ua != ub)                    // each sprite has its own range
	var st syscall.Stat_t
	is.NoErr(syscall.Stat(filepath.Join(lb.root, "a", "home", "made"), &st))
	is.Equal(ua, "0 "+strconv.Itoa(int(st.Uid))+" 65536") // what it writes is owned by its range's first host uid
	is.True(st.Uid != 0)                                  // not host root

	// What the server writes into the tree belongs to the sprite.
	is.NoErr(a.WriteFile(ctx, sprite.HomeDir+"/.config/x/conf", []byte("x"), 0o600))
	code, out := run(t, a, `cat ~/.config/x/conf && echo more >> ~/.config/x/conf && mkdir ~/.config/x/sub && echo ok`)
	is.Equal(code, 0)      // the sprite can change the server's files
	is.Equal(out, "xok\n") // and reads them
	is.NoErr(a.WriteFile(ctx, sprite.HomeDir+"/.config/x/conf", []byte("y"), 0o600))

	// A server restarted over the same data dir finds the same ranges.
	lb2, err := newBackend(filepath.Dir(lb.root), lb.limits, time.Second)
	is.NoErr(err)
	is.NoErr(useBwrapT(t, lb2))
	a2, err := lb2.Get(ctx, "a", sprite.Options{})
	is.NoErr(err)
	is.Equal(uidOf(a2), ua) // the same uid after a restart
	c, err := lb2.Create(ctx, "c", sprite.Options{})
	is.NoErr(err)
	uc := uidOf(c)
	is.True(uc != ua && uc != ub) // a new sprite does not take a range in use
}

// Another sprite's files cannot be read even by a process that knows their
// host path: each tree belongs to its own range, mode 0700.
func TestAnotherSpritesFilesUnreadableByPath(t *testing.T) {
	t.Parallel()
	lb := requireRootBwrap(t)
	is := is.New(t)
	ctx := context.Background()
	a, err := lb.Create(ctx, "a", sprite.Options{})
	is.NoErr(err)
	code, _ := run(t, a, `echo secret > ~/secret; chmod 644 ~/secret`)
	is.Equal(code, 0)
	b, err := lb.Create(ctx, "b", sprite.Options{})
	is.NoErr(err)
	bs := b.(*localSprite)
	// A process with sprite b's host identity, on the host.
	cmd := exec.Command("cat", filepath.Join(lb.root, "a", "home", "secret"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(bs.uid), Gid: uint32(bs.uid)}}
	out, err := cmd.CombinedOutput()
	is.True(err != nil)                                         // it cannot read a's file
	is.True(strings.Contains(string(out), "Permission denied")) // for lack of permission
	is.True(!strings.Contains(string(out), "secret\n"))
}

// RLIMIT_NPROC binds the sprite's root (it is not host root): 4,500
// processes are refused past the limit.
func TestProcessLimitHoldsForTheSpritesRoot(t *testing.T) {
	t.Parallel()
	lb := requireRootBwrap(t)
	is := is.New(t)
	lb.limits.Processes = 200
	sp, err := lb.Create(context.Background(), "a", sprite.Options{})
	is.NoErr(err)
	// Fork sleeping children until the kernel refuses, up to 4,500.
	code, out := run(t, sp, `python3 -c '
import os, signal, time
kids = []
for i in range(4500):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
print(len(kids))
for k in kids:
    os.kill(k, signal.SIGKILL)
'`)
	is.Equal(code, 0) // the script runs to its end
	n, err := strconv.Atoi(strings.TrimSpace(out))
	is.NoErr(err)     // it counted its processes
	is.True(n < 200)  // no more than the limit exist at once (the shell and python count too)
	is.True(n >= 150) // and the limit, not something else, stopped them
}

// As an unprivileged user (a laptop), the same sandbox holds with that
// user's uid as the sprite's root: this re-runs the sandbox tests as
// nobody, from a copy of this test binary.
func TestUnprivilegedServer(t *testing.T) {
	t.Parallel()
	requireBwrap(t)
	if os.Getenv("AOD_UNPRIVILEGED_CHILD") == "1" || os.Geteuid() != 0 {
		t.Skip("runs as root only (it switches to nobody)")
	}
	setpriv := FindBinary("setpriv")
	if setpriv == "" {
		t.Fatal("setpriv (util-linux) is needed to run the sandbox as an unprivileged user")
	}
	is := is.New(t)
	// Not t.TempDir: its parent is private to root, and nobody must reach it.
	dir, err := os.MkdirTemp("", "aod-unprivileged-")
	is.NoErr(err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	is.NoErr(os.Chmod(dir, 0o755))
	self, err := os.Executable()
	is.NoErr(err)
	data, err := os.ReadFile(self)
	is.NoErr(err)
	bin := filepath.Join(dir, "local.test")
	is.NoErr(os.WriteFile(bin, data, 0o755))
	work := filepath.Join(dir, "work")
	is.NoErr(os.Mkdir(work, 0o755))
	is.NoErr(os.Chown(work, 65534, 65534))
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "-test.count=1", "-test.v",
		"-test.run", "TestProcSysReadOnly|TestPrivateHostFilesHidden|TestSpriteCannotReachTheHostsNetwork|TestLimitedNetworkingInASprite|TestMemoryLimit|TestRuntimeDirMountedReadOnly|TestHostSideFileOpsNeverLeaveTheTree|TestDeleteClearsDeepReadOnlyTrees")
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + sprite.DefaultPath, "HOME=" + work, "TMPDIR=" + work, "AOD_REQUIRE_BWRAP=1", "AOD_UNPRIVILEGED_CHILD=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the sandbox tests fail as an unprivileged user: %v\n%s", err, out)
	}
	is.True(strings.Count(string(out), "--- PASS") >= 8) // every one of them ran and passed
	is.True(!strings.Contains(string(out), "--- SKIP"))
}
