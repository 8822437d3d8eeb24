package local

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprite"
)

// firstByte runs argv and returns the time to its first stdout byte.
func firstByte(b *testing.B, argv []string, extra []*os.File) time.Duration {
	b.Helper()
	start := time.Now()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + sprite.DefaultPath}
	cmd.ExtraFiles = extra
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := out.Read(buf); err != nil {
		b.Fatalf("%v: %v", argv, err)
	}
	d := time.Since(start)
	cmd.Wait()
	return d
}

func percentiles(b *testing.B, run func() time.Duration) {
	const n = 200
	lat := make([]time.Duration, 0, n)
	for range n {
		lat = append(lat, run())
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(n-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSpriteStart is `echo hi` → first stdout byte, piece by piece:
// a bare `bwrap --unshare-all`, then the sprite's own root and binds, its
// init, the init's uid range, the egress relay, and a full sprite Start
// (which adds the proxy socket and the cgroup). Each step's cost is the
// difference from the one before, in one run.
func BenchmarkSpriteStart(b *testing.B) {
	requireBwrap(b)
	lb, err := newBackend(b.TempDir(), Limits{Processes: 1024, FileSizeBytes: 1 << 30, CPUSeconds: 60, MemoryBytes: 4 << 30}, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	if err := useBwrapT(b, lb); err != nil {
		b.Fatal(err)
	}
	spr, err := lb.Create(context.Background(), "bench", sprite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	s := spr.(*localSprite)
	echo := []string{"/bin/echo", "hi"}
	proxy, err := lb.net.serve(s.name, sprite.Network{})
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.close()
	// The pieces below run with the sprite's root held mounted, as a
	// command's bwrap has it.
	sargs, release, err := s.sandboxArgs(sprite.HomeDir, proxy.path)
	if err != nil {
		b.Fatal(err)
	}
	args := append([]string{lb.bwrap}, sargs...)
	steps := []struct {
		name string
		argv []string
	}{
		{"1-bare-bwrap", append([]string{lb.bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
			"--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--"}, echo...)},
		{"2-sprite-root", append(slices.Clone(args), echo...)},
		{"3-init", append(append(slices.Clone(args), initPath), initArgs{limits: lb.limits, argv: echo}.args()...)},
		{"4-init-uid-range", append(append(slices.Clone(args), initPath), initArgs{uidBase: s.uid, limits: lb.limits, argv: echo}.args()...)},
		{"5-init-uid-range-relay", append(append(slices.Clone(args), initPath),
			initArgs{uidBase: s.uid, socket: egressSocket, limits: lb.limits, argv: echo}.args()...)},
	}
	for _, st := range steps {
		b.Run(st.name, func(b *testing.B) {
			for b.Loop() {
				percentiles(b, func() time.Duration { return firstByte(b, st.argv, nil) })
			}
		})
	}
	release()
	// What a command adds for a writable root: mounting it on the host
	// (and making its mount points safe), and unmounting it after.
	b.Run("5b-root-mount-and-unmount", func(b *testing.B) {
		if lb.rootfs == nil {
			b.Skip("BENCHMARK NOT RUN: no writable root here: " + lb.rootfsWhy)
		}
		for b.Loop() {
			percentiles(b, func() time.Duration {
				start := time.Now()
				_, release, err := s.sandboxArgs(sprite.HomeDir, proxy.path)
				if err != nil {
					b.Fatal(err)
				}
				release()
				return time.Since(start)
			})
		}
	})
	cg := lb.cg
	b.Run("6-sprite-start-no-cgroup", func(b *testing.B) {
		lb.cg = nil
		defer func() { lb.cg = cg }()
		for b.Loop() {
			percentiles(b, func() time.Duration { return startToFirstByte(b, spr, echo) })
		}
	})
	b.Run("7-sprite-start", func(b *testing.B) {
		if cg == nil {
			b.Skip("BENCHMARK NOT RUN: no cgroups here: " + lb.cgWhy)
		}
		for b.Loop() {
			percentiles(b, func() time.Duration { return startToFirstByte(b, spr, echo) })
		}
	})
	// A new sprite each time, as each session has: its first command runs
	// in a warm sprite's parked init (the time includes Create, which takes
	// the warm tree). The pause between sessions lets the pool refill, as
	// the time a session runs would.
	b.Run("8-new-sprite-warm", func(b *testing.B) {
		lb.warm = newWarmPool(lb, 2, slog.New(slog.DiscardHandler))
		lb.warm.start()
		defer func() { lb.warm.close(); lb.warm = nil }()
		n := 0
		for b.Loop() {
			percentiles(b, func() time.Duration {
				n++
				name := "warm" + strconv.Itoa(n)
				start := time.Now()
				spr, err := lb.Create(context.Background(), name, sprite.Options{})
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				d += startToFirstByte(b, spr, echo)
				lb.Delete(context.Background(), name)
				time.Sleep(20 * time.Millisecond)
				return d
			})
		}
	})
}

// startToFirstByte is a sprite Start of argv → its first stdout byte.
func startToFirstByte(b testing.TB, spr sprite.Sprite, argv []string) time.Duration {
	start := time.Now()
	first := make(chan struct{}, 1)
	w := writerFunc(func(p []byte) (int, error) {
		select {
		case first <- struct{}{}:
		default:
		}
		return len(p), nil
	})
	p, err := spr.Start(context.Background(), sprite.ExecRequest{Argv: argv, Env: []string{"PATH=" + sprite.DefaultPath}, Stdout: w})
	if err != nil {
		b.Fatal(err)
	}
	<-first
	d := time.Since(start)
	p.Wait()
	return d
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
