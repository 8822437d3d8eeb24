package runtimes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/runner/local"
	"github.com/matryer/is"
	"golang.org/x/sys/unix"
)

// tinyPackage is a real npm package small enough to install in a test: no
// dependencies, one command.
var tinyPackage = Package{Name: "mkdirp", Version: "1.0.4", Bin: "mkdirp"}

// realNPM is the npm the tests wrap; the test skips loudly without one.
func realNPM(t *testing.T) string {
	t.Helper()
	npm := local.FindBinary("npm")
	if npm == "" {
		t.Skip("!!! SKIPPING INSTALL TEST: npm is not installed !!!")
	}
	return npm
}

// npmWrapper writes an npm stand-in that counts its runs in a file, then
// runs body (with $PWD = the install prefix).
func npmWrapper(t *testing.T, body string) (npm, count string) {
	t.Helper()
	dir := t.TempDir()
	count = filepath.Join(dir, "runs")
	npm = filepath.Join(dir, "npm")
	script := "#!/bin/sh\necho run >> " + count + "\n" + body + "\n"
	if err := os.WriteFile(npm, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return npm, count
}

func runs(count string) int {
	b, _ := os.ReadFile(count)
	return strings.Count(string(b), "run\n")
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// entries lists a directory's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestInstallOnceAndReuse(t *testing.T) {
	is := is.New(t)
	npm, count := npmWrapper(t, "exec "+realNPM(t)+` "$@"`)
	root := filepath.Join(t.TempDir(), "runtimes")
	in := &Installer{dir: root, npm: npm, log: quietLog()}
	dir, err := in.Ensure(context.Background(), tinyPackage)
	is.NoErr(err)                                                              // a real npm install of a tiny package
	is.Equal(dir, filepath.Join(root, "mkdirp@1.0.4"))                         // into <RuntimeDir>/<slug>@<version>
	is.True(exists(filepath.Join(dir, "node_modules", ".bin", "mkdirp")))      // with its command
	is.Equal(runs(count), 1)                                                   // npm ran once
	is.Equal(entries(t, root), []string{".lock-mkdirp@1.0.4", "mkdirp@1.0.4"}) // the temporary dir was renamed into place
	marker := filepath.Join(dir, installMarker)
	before, err := os.Stat(marker)
	is.NoErr(err) // the install is marked
	data, _ := os.ReadFile(marker)
	is.True(strings.Contains(string(data), `"package":"mkdirp","version":"1.0.4"`)) // with what it is

	again, err := in.Ensure(context.Background(), tinyPackage)
	is.NoErr(err)            // asking again
	is.Equal(again, dir)     // gives the same directory
	is.Equal(runs(count), 1) // without running npm
	other := &Installer{dir: root, npm: npm, log: quietLog()}
	_, err = other.Ensure(context.Background(), tinyPackage)
	is.NoErr(err)            // another installer on the same cache (another process)
	is.Equal(runs(count), 1) // reuses it too
	after, err := os.Stat(marker)
	is.NoErr(err)                                                                                // the marker is still there
	is.Equal(after.ModTime(), before.ModTime())                                                  // untouched: nothing was reinstalled
	is.Equal(in.Path(Package{Name: "@a/b", Version: "1.0.0"}), filepath.Join(root, "a-b@1.0.0")) // scoped names make flat slugs
}

// TestInstallHelperProcess is not a test: the install tests run it as a
// separate process racing them or killed mid-install.
func TestInstallHelperProcess(t *testing.T) {
	dir := os.Getenv("AOD_INSTALL_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	in := &Installer{dir: dir, npm: os.Getenv("AOD_INSTALL_HELPER_NPM"), log: quietLog()}
	got, err := in.Ensure(context.Background(), tinyPackage)
	if err != nil {
		fmt.Println("helper-error:", err)
		os.Exit(3)
	}
	fmt.Println("helper-dir:", got)
}

func helperProcess(t *testing.T, dir, npm string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestInstallHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "AOD_INSTALL_HELPER_DIR="+dir, "AOD_INSTALL_HELPER_NPM="+npm)
	return cmd
}

func TestInstallConcurrentInstallersRunNpmOnce(t *testing.T) {
	is := is.New(t)
	// npm is slowed down so every contender arrives while the first installs.
	npm, count := npmWrapper(t, "sleep 1\nexec "+realNPM(t)+` "$@"`)
	root := filepath.Join(t.TempDir(), "runtimes")
	proc := helperProcess(t, root, npm)
	var procOut strings.Builder
	proc.Stdout = &procOut
	is.NoErr(proc.Start()) // another process installing the same package
	var wg sync.WaitGroup
	dirs := make([]string, 3)
	errs := make([]error, 3)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := &Installer{dir: root, npm: npm, log: quietLog()} // each with its own lock file handle
			dirs[i], errs[i] = in.Ensure(context.Background(), tinyPackage)
		}()
	}
	wg.Wait()
	is.NoErr(proc.Wait()) // the other process succeeds
	for i := range dirs {
		is.NoErr(errs[i])                                      // every goroutine succeeds
		is.Equal(dirs[i], filepath.Join(root, "mkdirp@1.0.4")) // with the one directory
	}
	is.True(strings.Contains(procOut.String(), "helper-dir: "+filepath.Join(root, "mkdirp@1.0.4"))) // the process got it too
	is.Equal(runs(count), 1)                                                                        // and npm ran exactly once across all of them
}

// hangingNPM starts a partial install, records its pid and waits forever.
func hangingNPM(t *testing.T) (npm, count, started string) {
	t.Helper()
	started = filepath.Join(t.TempDir(), "started")
	npm, count = npmWrapper(t, `mkdir -p "$PWD/node_modules/partial"`+"\necho $$ > "+started+".tmp && mv "+started+".tmp "+started+"\nexec sleep 60")
	return npm, count, started
}

// waitStarted returns the hanging npm's pid once it has started.
func waitStarted(t *testing.T, started string) int {
	t.Helper()
	var pid int
	if !eventually(func() bool {
		b, err := os.ReadFile(started)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	}) {
		t.Fatal("npm never started")
	}
	return pid
}

func alive(pid int) bool {
	st := procState(pid)
	return st != "" && st != "Z"
}

func tmpDirs(t *testing.T, root string) []string {
	var out []string
	for _, n := range entries(t, root) {
		if strings.HasPrefix(n, ".tmp-") {
			out = append(out, n)
		}
	}
	return out
}

func TestInstallCancelledLeavesNothing(t *testing.T) {
	is := is.New(t)
	npm, _, started := hangingNPM(t)
	root := filepath.Join(t.TempDir(), "runtimes")
	in := &Installer{dir: root, npm: npm, log: quietLog()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := in.Ensure(ctx, tinyPackage)
		done <- err
	}()
	pid := waitStarted(t, started)
	is.Equal(len(tmpDirs(t, root)), 1) // mid-install: a temporary dir holds the partial tree
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("install did not stop")
	}
	is.True(err != nil)                                                        // the install fails
	is.True(strings.Contains(err.Error(), "npm install mkdirp@1.0.4 stopped")) // saying it was stopped
	is.True(!exists(filepath.Join(root, "mkdirp@1.0.4")))                      // nothing at the final path
	is.Equal(len(tmpDirs(t, root)), 0)                                         // and the partial tree is gone
	is.True(eventually(func() bool { return !alive(pid) }))                    // npm (its whole group) was killed
}

func TestInstallKilledProcessLeavesNothingHalfMade(t *testing.T) {
	is := is.New(t)
	npm, _, started := hangingNPM(t)
	root := filepath.Join(t.TempDir(), "runtimes")
	proc := helperProcess(t, root, npm)
	is.NoErr(proc.Start()) // a server process installing
	pid := waitStarted(t, started)
	is.NoErr(proc.Process.Signal(syscall.SIGKILL)) // killed mid-install
	proc.Wait()
	is.True(!exists(filepath.Join(root, "mkdirp@1.0.4")))   // nothing half-made at the final path
	is.Equal(len(tmpDirs(t, root)), 1)                      // only a temporary dir, which no one uses
	is.True(eventually(func() bool { return !alive(pid) })) // npm died with it

	beta := filepath.Join(root, ".tmp-mkdirp@1.0.4-beta#123")
	is.NoErr(os.Mkdir(beta, 0o700)) // another version's install in progress
	good, count := npmWrapper(t, "exec "+realNPM(t)+` "$@"`)
	in := &Installer{dir: root, npm: good, log: quietLog()}
	dir, err := in.Ensure(context.Background(), tinyPackage)
	is.NoErr(err)                                                         // the next install works
	is.Equal(runs(count), 1)                                              // running npm afresh
	is.True(exists(filepath.Join(dir, "node_modules", ".bin", "mkdirp"))) // a complete tree
	is.True(!exists(filepath.Join(dir, "node_modules", "partial")))       // not the killed one's
	is.Equal(tmpDirs(t, root), []string{".tmp-mkdirp@1.0.4-beta#123"})    // whose leftovers are removed, not another version's
}

func TestInstallNpmFailure(t *testing.T) {
	is := is.New(t)
	npm, _ := npmWrapper(t, `mkdir -p "$PWD/node_modules/x"`+"\necho 'npm error code E404' >&2\necho 'npm error 404 Not Found - GET https://registry.npmjs.org/mkdirp' >&2\nexit 1")
	root := filepath.Join(t.TempDir(), "runtimes")
	in := &Installer{dir: root, npm: npm, log: quietLog()}
	_, err := in.Ensure(context.Background(), tinyPackage)
	is.True(err != nil)                                                                                                                                                     // npm failed
	is.Equal(err.Error(), "npm install mkdirp@1.0.4 failed (exit status 1)\nstderr:\nnpm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/mkdirp") // with the tail of npm's stderr
	is.Equal(entries(t, root), []string{".lock-mkdirp@1.0.4"})                                                                                                              // and nothing else left

	noBin, _ := npmWrapper(t, "exit 0")
	in.npm = noBin
	_, err = in.Ensure(context.Background(), tinyPackage)
	is.Equal(err.Error(), "npm install mkdirp@1.0.4 did not install the mkdirp command") // an install without the CLI's command fails
	in.npm = ""
	_, err = in.Ensure(context.Background(), tinyPackage)
	is.True(strings.HasPrefix(err.Error(), "npm not found")) // so does a server without npm
}

func TestInstallWaitForLockHonoursContext(t *testing.T) {
	is := is.New(t)
	npm, count := npmWrapper(t, "exit 1")
	root := t.TempDir()
	f, err := os.OpenFile(filepath.Join(root, ".lock-mkdirp@1.0.4"), os.O_RDWR|os.O_CREATE, 0o644)
	is.NoErr(err) // the lock file
	defer f.Close()
	is.NoErr(unix.Flock(int(f.Fd()), unix.LOCK_EX)) // held by someone else
	in := &Installer{dir: root, npm: npm, log: quietLog()}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = in.Ensure(ctx, tinyPackage)
	is.True(errors.Is(err, context.DeadlineExceeded)) // the wait ends with the context
	is.Equal(runs(count), 0)                          // without running npm
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// eventually polls cond until it holds or 15s pass, and reports whether it
// held. It waits on the kernel, never asserts.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// procState reads a process's state letter from /proc/<pid>/stat ("" when
// it is gone).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 1 {
		return ""
	}
	return fields[0]
}

func TestCacheDir(t *testing.T) {
	is := is.New(t)
	wd, err := os.Getwd()
	is.NoErr(err)
	dir, err := CacheDir("data", "")
	is.NoErr(err)
	is.Equal(dir, filepath.Join(wd, "data", "runtimes")) // by default under the data dir, made absolute
	dir, err = CacheDir("data", "/srv/cache")
	is.NoErr(err)
	is.Equal(dir, "/srv/cache") // --runtime-dir wins
	dir, err = CacheDir("data", "cache")
	is.NoErr(err)
	is.Equal(dir, filepath.Join(wd, "cache")) // relative to the working directory, not the data dir
}

// DiskUsage counts what npm has written so far while it works, only for
// the package asked about, then the installed tree.
func TestDiskUsage(t *testing.T) {
	is := is.New(t)
	signals := t.TempDir()
	gate, started := filepath.Join(signals, "go"), filepath.Join(signals, "started")
	// npm writes 3000 bytes (linked under two names, as npm does with a
	// native binary), says it started, waits for the gate, then writes the
	// command.
	npm, _ := npmWrapper(t, `mkdir -p "$PWD/node_modules/.bin" && head -c 3000 /dev/zero > "$PWD/node_modules/partial"
ln "$PWD/node_modules/partial" "$PWD/node_modules/link"
echo $$ > `+started+`
while [ ! -e `+gate+` ]; do sleep 0.02; done
printf '#!/bin/sh\n' > "$PWD/node_modules/.bin/mkdirp"`)
	root := filepath.Join(t.TempDir(), "runtimes")
	in := &Installer{dir: root, npm: npm, log: quietLog()}
	is.Equal(in.DiskUsage(tinyPackage), int64(0)) // nothing yet, not even the cache dir
	// A half-made install of another version of the same package.
	beta := tinyPackage
	beta.Version = "1.0.4-beta"
	other := filepath.Join(root, tmpPrefix(beta)+"1")
	is.NoErr(os.MkdirAll(other, 0o755))
	is.NoErr(os.WriteFile(filepath.Join(other, "f"), make([]byte, 500), 0o644))

	done := make(chan error, 1)
	go func() {
		_, err := in.Ensure(context.Background(), tinyPackage)
		done <- err
	}()
	waitStarted(t, started)
	is.True(eventually(func() bool { return in.DiskUsage(tinyPackage) == 3000 })) // npm's bytes so far, a linked file once, not the beta's
	is.Equal(in.DiskUsage(beta), int64(500))                                      // which counts for the beta only
	is.NoErr(os.WriteFile(gate, nil, 0o644))
	is.NoErr(<-done)
	marker, err := os.Stat(filepath.Join(in.Path(tinyPackage), installMarker))
	is.NoErr(err)
	is.Equal(in.DiskUsage(tinyPackage), 3000+int64(len("#!/bin/sh\n"))+marker.Size()) // the installed tree
}
