package local

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/matryer/is"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// writeReal writes n bytes of data that really take n bytes of disk.
func writeReal(t testing.TB, name string, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func usage(t *testing.T, dir string, stopAt int64) (int64, bool) {
	t.Helper()
	used, over, err := treeUsage(dir, stopAt)
	if err != nil {
		t.Fatalf("treeUsage: %v", err)
	}
	return used, over
}

func TestUsageRealData(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	is.NoErr(os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
	writeReal(t, filepath.Join(dir, "a", "b", "big"), 10*mib)
	used, over := usage(t, dir, 0)
	t.Logf("10 MiB file: %d bytes", used)
	is.True(used >= 10*mib) // all of the file's blocks
	is.True(used < 11*mib)  // and not much else
	is.True(!over)          // no limit, never over
}

func TestUsageSparse(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	is.NoErr(err)
	is.NoErr(f.Truncate(1 << 30))
	is.NoErr(f.Close())
	used, _ := usage(t, dir, 0)
	t.Logf("1 GiB sparse file: %d bytes", used)
	is.True(used < mib) // a hole takes no disk
}

func TestUsageSymlinkNotFollowed(t *testing.T) {
	is := is.New(t)
	outside, dir := t.TempDir(), t.TempDir()
	writeReal(t, filepath.Join(outside, "big"), 10*mib)
	is.NoErr(os.Symlink(filepath.Join(outside, "big"), filepath.Join(dir, "to-file")))
	is.NoErr(os.Symlink(outside, filepath.Join(dir, "to-dir")))
	used, _ := usage(t, dir, 0)
	t.Logf("links to 10 MiB outside: %d bytes", used)
	is.True(used < mib) // neither link was followed

	_, _, err := treeUsage(filepath.Join(dir, "to-dir"), 0)
	is.True(err != nil) // the tree itself is not taken through a link either
}

func TestUsageHardLinkOnce(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	is.NoErr(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	writeReal(t, filepath.Join(dir, "big"), 10*mib)
	is.NoErr(os.Link(filepath.Join(dir, "big"), filepath.Join(dir, "sub", "again")))
	is.NoErr(os.Link(filepath.Join(dir, "big"), filepath.Join(dir, "third")))
	used, _ := usage(t, dir, 0)
	t.Logf("10 MiB file with three names: %d bytes", used)
	is.True(used >= 10*mib) // counted
	is.True(used < 11*mib)  // once
}

func TestUsageStopAt(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	for i := range 10 {
		writeReal(t, filepath.Join(dir, "f"+strconv.Itoa(i)), mib)
	}
	total, over := usage(t, dir, 0)
	is.True(total >= 10*mib)
	is.True(!over)

	used, over := usage(t, dir, 2*mib+mib/2)
	t.Logf("stop at 2.5 MiB of %d: %d bytes", total, used)
	is.True(over)                  // over the limit
	is.True(used > 2*mib+mib/2)    // what it saw exceeds it
	is.True(used <= 4*mib)         // and it stopped right there
	_, over = usage(t, dir, total) // exactly at the limit is not over
	is.True(!over)
	_, over = usage(t, dir, 100*mib)
	is.True(!over)
}

// TestUsageMountNotCrossed: a filesystem mounted inside the tree is not
// counted.
func TestUsageMountNotCrossed(t *testing.T) {
	is := is.New(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	is.NoErr(os.Mkdir(mnt, 0o755))
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=32m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	writeReal(t, filepath.Join(mnt, "big"), 10*mib)
	used, _ := usage(t, dir, 0)
	t.Logf("10 MiB on a tmpfs mounted inside: %d bytes", used)
	is.True(used < mib) // the other filesystem is not counted

	used, _ = usage(t, mnt, 0)
	is.True(used >= 10*mib) // measured on its own, it is
}

// TestUsageDeep: a tree deeper than the fds the walk keeps open is
// measured whole (the walk climbs back through "..").
func TestUsageDeep(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	const depth = 3*heldDirs + 7
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	is.NoErr(err)
	for i := range depth {
		is.NoErr(unix.Mkdirat(fd, "d", 0o755))
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		is.NoErr(err)
		unix.Close(fd)
		fd = next
		if i%50 == 0 {
			// A sibling directory after the deep one, so the walk must come back up.
			is.NoErr(unix.Mkdirat(fd, "z", 0o755))
			f, err := unix.Openat(fd, "z/data", unix.O_WRONLY|unix.O_CREAT, 0o644)
			is.NoErr(err)
			unix.Write(f, make([]byte, 64<<10))
			unix.Fsync(f)
			unix.Close(f)
		}
	}
	unix.Close(fd)
	want := duOf(t, dir)
	used, _ := usage(t, dir, 0)
	t.Logf("%d levels: %d bytes, du says %d", depth, used, want)
	is.Equal(used, want) // every level, down and back up
}

// duOf sums st_blocks*512 the simple way (fine for a tree without links).
func duOf(t *testing.T, dir string) int64 {
	t.Helper()
	var sum int64
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var walk func(fd int)
	walk = func(fd int) {
		var st unix.Stat_t
		unix.Fstat(fd, &st)
		sum += st.Blocks * 512
		f := os.NewFile(uintptr(fd), "")
		entries, _ := f.ReadDir(-1)
		for _, e := range entries {
			if e.IsDir() {
				sub, err := unix.Openat(fd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY, 0)
				if err != nil {
					t.Fatal(err)
				}
				walk(sub)
				continue
			}
			unix.Fstatat(fd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW)
			sum += st.Blocks * 512
		}
		f.Close()
	}
	dup, _ := unix.Dup(fd)
	walk(dup)
	return sum
}

func TestUsageMissing(t *testing.T) {
	is := is.New(t)
	_, _, err := treeUsage(filepath.Join(t.TempDir(), "nope"), 0)
	is.True(errors.Is(err, unix.ENOENT)) // the tree must exist
}

// BenchmarkTreeUsage measures a tree of 10,000 small files (100
// directories of 100).
func BenchmarkTreeUsage(b *testing.B) {
	dir := b.TempDir()
	data := make([]byte, 200)
	for i := range 100 {
		sub := filepath.Join(dir, "d"+strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := range 100 {
			if err := os.WriteFile(filepath.Join(sub, "f"+strconv.Itoa(j)), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	var used int64
	for b.Loop() {
		var err error
		if used, _, err = treeUsage(dir, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(used), "bytes")
}
