package local

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// sandboxModes are the modes a test runs under: none always, bwrap when it
// works here (CI installs it).
func sandboxModes(t *testing.T) []string {
	return []string{SandboxNone, SandboxBwrap}
}

// requireBwrap skips loudly where bubblewrap cannot run; with
// AOD_REQUIRE_BWRAP=1 (set by .ci/run) it fails instead, so CI never
// passes without running the sandbox tests.
func requireBwrap(t testing.TB) {
	t.Helper()
	skip := func(format string, args ...any) { testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", format, args...) }
	if _, err := exec.LookPath("bwrap"); err != nil && FindBinary("bwrap") == "" {
		skip("sandbox test: bubblewrap (bwrap) is not installed; install the bubblewrap package to run it")
	}
	lb, err := newBackend(t.TempDir(), Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	if err := useBwrapT(t, lb); err != nil {
		skip("sandbox test: bubblewrap does not work on this machine: %v", err)
	}
}

// useBwrapT switches a test's backend to bubblewrap; the sprites' mounts
// go when the test ends, before its directories are removed.
func useBwrapT(t testing.TB, lb *Backend) error {
	err := lb.useBwrap(context.Background(), t.TempDir())
	t.Cleanup(lb.Close)
	return err
}

func TestSystemRootArgs(t *testing.T) {
	is := is.New(t)
	dirs, kern, err := systemRootArgs("/tmp/aod-data")
	is.NoErr(err) // build the root
	args := append(dirs, kern...)
	joined := " " + strings.Join(args, " ") + " "
	is.True(strings.Contains(joined, " --ro-bind /usr /usr "))     // /usr is read-only
	is.True(strings.Contains(joined, " --ro-bind /etc /etc "))     // so is /etc
	is.True(strings.Contains(joined, " --proc /proc --dev /dev ")) // with a private /proc and /dev
	is.True(!strings.Contains(joined, " --tmpfs /tmp/aod-data "))  // a data dir outside the system dirs needs no mask
	for i := 0; i+2 < len(args); i++ {
		is.True(!(args[i+1] == "/" && (args[i] == "--ro-bind" || args[i] == "--bind"))) // never the host's whole root
	}
	args, _, err = systemRootArgs("/etc/aod-data")
	is.NoErr(err) // a data dir inside a bound system dir
	joined = " " + strings.Join(args, " ") + " "
	is.True(strings.Contains(joined, " --tmpfs /etc/aod-data "))                                           // is hidden under a tmpfs
	is.True(strings.Index(joined, "--tmpfs /etc/aod-data") > strings.Index(joined, "--ro-bind /etc /etc")) // after /etc is bound
}

func TestBwrapModeFailsClosed(t *testing.T) {
	is := is.New(t)
	dir, ctx := t.TempDir(), context.Background()
	t.Setenv("PATH", t.TempDir()) // no bwrap in PATH
	lb, err := newBackend(dir, Limits{Processes: 100, FileSizeBytes: 1 << 20, CPUSeconds: 10}, 0)
	is.NoErr(err) // a backend
	if FindBinary("bwrap") != "" {
		// bwrap is installed in a system dir FindBinary also searches:
		// break the probe by putting the sprites dir below a file instead.
		is.NoErr(os.WriteFile(filepath.Join(dir, "file"), nil, 0o600))
		lb.root = filepath.Join(dir, "file", "sprites")
	}
	is.True(lb.useBwrap(ctx, dir) != nil) // a failing probe is an error
	is.Equal(lb.sandbox, SandboxNone)     // and leaves the backend unsandboxed, not half-configured
}

// TestAutoSandboxRefusesRootUnsandboxed: with a bubblewrap that cannot run,
// auto refuses to start as root (sessions would run as host root) and names
// the way out; unprivileged, it falls back to none and says so loudly.
func TestAutoSandboxRefusesRootUnsandboxed(t *testing.T) {
	is := is.New(t)
	broken := filepath.Join(t.TempDir(), "bwrap")
	is.NoErr(os.WriteFile(broken, []byte("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"), 0o755))
	old := findBwrap
	findBwrap = func() string { return broken }
	t.Cleanup(func() { findBwrap = old })
	var logs bytes.Buffer
	b, err := New(Config{DataDir: t.TempDir(), Sandbox: SandboxAuto, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Limits: Limits{Processes: 100, FileSizeBytes: 1 << 20, CPUSeconds: 10}, Drain: time.Second})
	if os.Geteuid() == 0 {
		is.True(err != nil) // refused as root
		t.Logf("refusal: %v", err)
		is.True(strings.Contains(err.Error(), "running as root"))   // says why
		is.True(strings.Contains(err.Error(), "Permission denied")) // with the probe's own error
		is.True(strings.Contains(err.Error(), "--sandbox none"))    // and the way out
		return
	}
	is.NoErr(err)                                           // unprivileged: starts
	is.Equal(b.Sandbox(), SandboxNone)                      // unsandboxed
	is.True(strings.Contains(logs.String(), "SANDBOX OFF")) // and warns loudly
}

func TestRuntimeDirMountedReadOnly(t *testing.T) {
	for _, mode := range sandboxModes(t) {
		t.Run(mode, func(t *testing.T) {
			if mode == SandboxBwrap {
				requireBwrap(t)
			}
			is := is.New(t)
			host := t.TempDir()
			is.NoErr(os.Chmod(host, 0o755))                                                                                                  // the installer's trees are world-readable
			is.NoErr(os.MkdirAll(filepath.Join(host, "node_modules", ".bin"), 0o755))                                                        // an installed tree
			is.NoErr(os.WriteFile(filepath.Join(host, "node_modules", ".bin", "hello-cli"), []byte("#!/bin/sh\necho hi from cli\n"), 0o755)) // with a command
			at := "/aod/runtimes/hello@1.0.0"
			lb, err := newBackend(t.TempDir(), Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
			is.NoErr(err) // a backend
			if mode == SandboxBwrap {
				is.NoErr(useBwrapT(t, lb)) // sandboxed
			}
			sp, err := lb.Create(context.Background(), "s1", sprite.Options{ReadOnlyBinds: []sprite.Bind{{Host: host, At: at}}})
			is.NoErr(err) // a sprite with the tree bound in
			var out, errOut bytes.Buffer
			p, err := sp.Start(context.Background(), sprite.ExecRequest{
				Argv: []string{"sh", "-c", `hello-cli; touch "$1/x" 2>/dev/null && echo writable || echo read-only`, "sh", sp.Path(at)},
				Env:  []string{"PATH=" + sp.Path(at) + "/node_modules/.bin:" + sprite.DefaultPath}, Stdout: &out, Stderr: &errOut,
			})
			is.NoErr(err) // start a command using the CLI from PATH
			st, err := p.Wait()
			is.NoErr(err)        // it runs
			is.Equal(st.Code, 0) // and succeeds
			want := "hi from cli\nread-only\n"
			if mode == SandboxNone {
				want = "hi from cli\nwritable\n" // unsandboxed there is no read-only mount: the host path itself is used
				is.Equal(sp.Path(at), host)      // which is where Path points
			}
			is.Equal(out.String(), want) // the CLI is found on PATH; under bwrap its tree cannot be changed
			_, err = lb.Create(context.Background(), "s2", sprite.Options{ReadOnlyBinds: []sprite.Bind{{Host: host, At: sprite.HomeDir + "/x"}}})
			is.True(err != nil) // a bind may not cover the sprite's own tree
		})
	}
}

// Kernel tunables are read-only in a sandboxed sprite: as host root (CI) a
// sprite could otherwise write kernel.core_pattern, which the kernel runs
// as root on the host. The check writes back the value already there, so
// it changes nothing even where it succeeds.
func TestProcSysReadOnly(t *testing.T) {
	t.Parallel()
	requireBwrap(t)
	is := is.New(t)
	lb, err := newBackend(t.TempDir(), Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	is.NoErr(err)              // a backend
	is.NoErr(useBwrapT(t, lb)) // sandboxed
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err) // a sprite
	var out, errOut bytes.Buffer
	p, err := sp.Start(context.Background(), sprite.ExecRequest{
		Argv: []string{"sh", "-c", `f=/proc/sys/kernel/core_pattern; v=$(cat $f); test -w $f && echo test-w-passes
printf '%s\n' "$v" > $f && echo write-succeeds
n=0; for g in $(find /proc/sys -type f 2>/dev/null); do test -w "$g" && n=$((n+1)); done; echo "writable=$n"
cat /proc/sys/kernel/ostype`},
		Env: []string{"PATH=" + sprite.DefaultPath}, Stdout: &out, Stderr: &errOut,
	})
	is.NoErr(err) // start it
	st, err := p.Wait()
	is.NoErr(err)                                                       // it runs
	is.Equal(st.Code, 0)                                                // to the end
	is.Equal(out.String(), "writable=0\nLinux\n")                       // no sysctl passes test -w or takes a write; reading still works
	is.True(strings.Contains(errOut.String(), "Read-only file system")) // the write is refused by the mount
}

// Files in /etc that only their owner or group may read (the shadow files,
// private keys) cannot be read in a sandboxed sprite: its processes may be
// host uid 0, whose owner bits would otherwise let them read the hashes.
func TestPrivateHostFilesHidden(t *testing.T) {
	t.Parallel()
	requireBwrap(t)
	is := is.New(t)
	fi, err := os.Stat("/etc/shadow")
	if err != nil || fi.Mode().Perm()&0o004 != 0 {
		t.Fatalf("this test needs a private /etc/shadow on the host (got %v, %v)", fi, err)
	}
	lb, err := newBackend(t.TempDir(), Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	is.NoErr(err)              // a backend
	is.NoErr(useBwrapT(t, lb)) // sandboxed
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err) // a sprite
	var out lockedBuffer
	p, err := sp.Start(context.Background(), sprite.ExecRequest{
		Argv: []string{"sh", "-c", `cat /etc/shadow 2>/dev/null && echo shadow-readable; grep -q '^root:' /etc/passwd && echo passwd-readable`},
		Env:  []string{"PATH=" + sprite.DefaultPath}, Stdout: &out, Stderr: &out,
	})
	is.NoErr(err) // start it
	st, err := p.Wait()
	is.NoErr(err)                               // it runs
	is.Equal(st.Code, 0)                        // to the end
	is.Equal(out.String(), "passwd-readable\n") // no shadow line was read; world-readable files are untouched
}

// bwrap's root and /dev are tmpfs mounts as large as half the RAM: in a
// sprite /dev is read-only and /dev/shm holds 64 MiB, and the root is
// either read-only too or (a writable root) the sprite's own directory on
// disk, so a sprite cannot fill the host's memory through them; its own
// tree, /dev/null and the terminal devices still work.
func TestSandboxMemoryFilesystemsBounded(t *testing.T) {
	t.Parallel()
	requireBwrap(t)
	is := is.New(t)
	lb, err := newBackend(t.TempDir(), Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	is.NoErr(err)              // a backend
	is.NoErr(useBwrapT(t, lb)) // sandboxed
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{Mounts: []string{"/srv/repo"}})
	is.NoErr(err) // a sprite with a repository mounted outside its home
	var out, errOut bytes.Buffer
	p, err := sp.Start(context.Background(), sprite.ExecRequest{
		Argv: []string{"sh", "-c", `mkdir /pwn 2>/dev/null && echo root-writable
touch /dev/x 2>/dev/null && echo dev-writable
head -c 100000000 /dev/zero > /dev/shm/big 2>/dev/null; echo "shm=$(wc -c < /dev/shm/big)"
echo hi > /dev/null && echo devnull
touch ~/f /tmp/f /workspace/f /srv/repo/f && echo tree-writable`},
		Env: []string{"PATH=" + sprite.DefaultPath, "HOME=" + sprite.HomeDir}, Stdout: &out, Stderr: &errOut,
	})
	is.NoErr(err) // start it
	st, err := p.Wait()
	is.NoErr(err)        // it runs
	is.Equal(st.Code, 0) // to the end
	want := fmt.Sprintf("shm=%d\ndevnull\ntree-writable\n", shmSize)
	if lb.rootfs != nil {
		want = "root-writable\n" + want
		_, err := os.Stat(filepath.Join(lb.root, "s1", "root", "pwn"))
		is.NoErr(err) // what the sprite made at / is on disk, in its own tree
	}
	is.Equal(out.String(), want) // /dev refuses writes, so does a read-only root; /dev/shm stops at its size; the sprite's own tree works
}
