package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// limitedBackend is a bwrap backend with small limits.
func limitedBackend(t *testing.T, l Limits) *Backend {
	t.Helper()
	requireBwrap(t)
	if l.Processes == 0 {
		l.Processes = 1024
	}
	l.FileSizeBytes, l.CPUSeconds = 1<<30, 60
	lb, err := newBackend(t.TempDir(), l, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := useBwrapT(t, lb); err != nil {
		t.Fatal(err)
	}
	return lb
}

func runStatus(t *testing.T, sp sprite.Sprite, script string) (sprite.ExitStatus, string) {
	t.Helper()
	var out lockedBuffer
	p, err := sp.Start(context.Background(), sprite.ExecRequest{
		Argv: []string{"sh", "-c", script}, Env: []string{"PATH=" + sprite.DefaultPath, "HOME=" + sprite.HomeDir}, Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return st, out.String()
}

// Files past the disk limit end the command, with a message saying so,
// even when no single file is large.
func TestDiskLimitEndsTheCommand(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := limitedBackend(t, Limits{DiskBytes: 30 << 20})
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err)
	st, _ := runStatus(t, sp, `head -c 10000000 /dev/urandom > ~/a; sync; sleep 2.5; echo small-is-fine`)
	is.Equal(st.Code, 0) // 10 MB is within the limit
	is.Equal(st.Limit, "")
	start := time.Now()
	st, out := runStatus(t, sp, `for i in 1 2 3 4 5 6 7 8; do head -c 10000000 /dev/urandom > /tmp/f$i; done; sync; sleep 30; echo not-stopped`)
	is.True(st.Code != 0)                             // the command was stopped
	is.True(!strings.Contains(out, "not-stopped"))    // before it finished
	is.True(strings.Contains(st.Limit, "disk limit")) // saying why
	is.True(strings.Contains(st.Limit, "30MiB"))      // and what the limit is
	is.True(time.Since(start) < 20*time.Second)       // promptly
	_, err = os.Stat(filepath.Join(lb.root, "s1", "tmp", "f1"))
	is.NoErr(err) // the files stay for the user to clean up
}

// A sprite's memory is bounded: a 256 MiB allocation fails under a 64 MiB
// limit, 16 MiB works.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := limitedBackend(t, Limits{MemoryBytes: 64 << 20})
	if lb.cg == nil {
		t.Logf("no cgroups here (%s): testing the RLIMIT_DATA fallback", lb.cgWhy)
	}
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err)
	st, out := runStatus(t, sp, `python3 -c 'b = bytearray(16 << 20); b[::4096] = b"x" * len(b[::4096]); print("small ok")'`)
	is.Equal(st.Code, 0) // within the limit
	is.Equal(strings.TrimSpace(out), "small ok")
	st, out = runStatus(t, sp, `python3 -c 'b = bytearray(256 << 20); b[::4096] = b"x" * len(b[::4096]); print("big ok")'`)
	is.True(st.Code != 0)                     // the big one fails
	is.True(!strings.Contains(out, "big ok")) // never completes
	if lb.cg != nil {
		is.True(strings.Contains(st.Limit, "memory limit")) // the cgroup killed it, and says so
		is.True(strings.Contains(st.Limit, "64MiB"))
	} else {
		is.True(strings.Contains(out, "MemoryError")) // RLIMIT_DATA refused it
	}
}

func TestHumanBytes(t *testing.T) {
	is := is.New(t)
	is.Equal(humanBytes(10<<30), "10GiB")
	is.Equal(humanBytes(64<<20), "64MiB")
	is.Equal(humanBytes(1000), "1000 bytes")
}
