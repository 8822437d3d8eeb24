package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
	"golang.org/x/sys/unix"
)

// runtimesCLI runs aod in-process with the given environment and returns
// its stdout and stderr.
func runtimesCLI(env map[string]string, stderr io.Writer, args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, stderr)
	return out.String(), err
}

// needNPM ends the test loudly where npm is missing (CI installs it).
func needNPM(t *testing.T) {
	t.Helper()
	if local.FindBinary("npm") == "" {
		testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", "this test installs an agent CLI from npm: npm is not installed")
	}
}

// newDataDir makes a data dir as aod serve does.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	db, err := store.Open(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	return dir
}

// anyControl finds a control character other than a newline: an escape
// sequence, a carriage return, a tab.
var anyControl = regexp.MustCompile(`[\x00-\x09\x0b-\x1f\x7f]`)

// Installing for real from npm, with stderr no terminal: plain lines, into
// the cache serve uses by default; a second run does nothing.
func TestRuntimesInstallFromNPM(t *testing.T) {
	t.Parallel()
	needNPM(t)
	is := is.New(t)
	dataDir := newDataDir(t)
	env := map[string]string{"AOD_DATA_DIR": dataDir}
	claude := pinned("claude")

	var stderr bytes.Buffer
	start := time.Now()
	out, err := runtimesCLI(env, &stderr, "runtimes", "install", "claude")
	is.NoErr(err) // a fresh install from npm
	t.Logf("installed claude in %s\nstdout:\n%sstderr:\n%s", time.Since(start).Round(time.Millisecond), out, stderr.String())
	is.True(regexp.MustCompile(`^installed claude@` + regexp.QuoteMeta(claude.Version) + ` in \d+\.\ds \(\d+(\.\d)? MB\)\n$`).MatchString(out)) // one line per runtime, with time and size
	is.True(strings.Contains(stderr.String(), "installing claude@"+claude.Version+" from npm ("+claude.Name+") …\n"))                           // progress says what npm fetches
	is.True(strings.Contains(stderr.String(), "\n  added "))                                                                                    // and passes on npm's own lines
	is.True(!anyControl.MatchString(out))                                                                                                       // no control characters
	is.True(!anyControl.MatchString(stderr.String()))                                                                                           // anywhere: not a terminal

	// Where serve looks by default: <data-dir>/runtimes.
	dir := filepath.Join(dataDir, "runtimes", "anthropic-ai-claude-code@"+claude.Version)
	version, err := exec.Command(filepath.Join(dir, "node_modules", ".bin", "claude"), "--version").CombinedOutput()
	is.NoErr(err)                                                                // the CLI runs
	is.True(strings.Contains(string(version), claude.Version))                   // at the pinned version
	is.True(runtimes.NewInstaller(filepath.Dir(dir), "", nil).Installed(claude)) // as the runner's installer sees it
	before, err := os.Stat(dir)
	is.NoErr(err)

	stderr.Reset()
	out, err = runtimesCLI(env, &stderr, "runtimes", "install", "claude")
	is.NoErr(err)                                                   // again
	is.Equal(out, "claude "+claude.Version+": already installed\n") // says so
	is.Equal(stderr.String(), "")                                   // with no progress: npm did not run
	after, err := os.Stat(dir)
	is.NoErr(err)
	is.True(os.SameFile(before, after)) // and the installed tree is the same one, not a new install renamed into place

	out, err = runtimesCLI(env, io.Discard, "runtimes", "list")
	is.NoErr(err) // list
	rows := strings.Split(strings.TrimSpace(out), "\n")
	is.Equal(len(rows), 1+len(catalogue.AgentRuntimes()))                                                                                                                             // a header and every agent runtime
	is.True(regexp.MustCompile(`^claude +` + regexp.QuoteMeta(claude.Name) + ` +` + regexp.QuoteMeta(claude.Version) + ` +yes, ` + regexp.QuoteMeta(dir) + `$`).MatchString(rows[1])) // installed, and where
	for _, row := range rows[2:] {
		is.True(strings.HasSuffix(row, " no")) // the others are not
	}
}

// openPTY opens a pseudo-terminal 100 columns wide: its controlling side
// (read what was written to the terminal) and the terminal.
func openPTY(t *testing.T) (ptm, tty *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the terminal: %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 30, Col: 100}); err != nil {
		t.Fatalf("set the terminal's size: %v", err)
	}
	return ptm, tty
}

// Installing for real with stderr a terminal: a status line redrawn in
// place (spinner, bytes, elapsed time) and erased at the end. The cache is
// --runtime-dir's, which needs no data dir.
func TestRuntimesInstallTerminal(t *testing.T) {
	t.Parallel()
	needNPM(t)
	is := is.New(t)
	ptm, tty := openPTY(t)
	var screen bytes.Buffer
	read := make(chan struct{})
	go func() {
		io.Copy(&screen, ptm) // until the terminal is closed (EIO)
		close(read)
	}()
	cache := filepath.Join(t.TempDir(), "cache")
	env := map[string]string{"AOD_DATA_DIR": filepath.Join(t.TempDir(), "none"), "TERM": "xterm"}
	gemini := pinned("gemini")

	start := time.Now()
	out, err := runtimesCLI(env, tty, "runtimes", "install", "--runtime-dir", cache, "gemini")
	tty.Close()
	<-read
	is.NoErr(err) // a fresh install from npm, no data dir needed
	t.Logf("installed gemini in %s\nstdout:\n%s", time.Since(start).Round(time.Millisecond), out)
	is.True(regexp.MustCompile(`^installed gemini@` + regexp.QuoteMeta(gemini.Version) + ` in \d+\.\ds \(\d+(\.\d)? MB\)\n$`).MatchString(out)) // the result on stdout

	s := screen.String()
	status := regexp.MustCompile(`\r\x1b\[K[` + string(spinner) + `] installing gemini@` + regexp.QuoteMeta(gemini.Version) + `  (\d+(?:\.\d)?) MB  (\d+\.\d)s`)
	frames := status.FindAllStringSubmatch(s, -1)
	is.True(len(frames) >= 5) // the status line is redrawn as npm works
	first, last := frames[0], frames[len(frames)-1]
	is.True(first[1] != last[1])                                                   // the byte count grows
	is.True(first[2] != last[2])                                                   // and so does the time
	is.True(strings.HasSuffix(s, "\r\x1b[K"))                                      // it is erased at the end
	is.True(!strings.Contains(s, "installing gemini@"+gemini.Version+" from npm")) // no plain progress lines on a terminal
	is.True(strings.Contains(s, "runtime cache: "+cache+"\r\n"))                   // the cache used
	_, err = os.Stat(filepath.Join(cache, "google-gemini-cli@"+gemini.Version, "node_modules", ".bin", "gemini"))
	is.NoErr(err) // the CLI is in --runtime-dir's cache
}

// No names installs every agent runtime. The cache is the one the tests
// share (AOD_RUNTIME_DIR, as serve reads it), so nothing is downloaded
// that the other tests do not need anyway.
func TestRuntimesInstallAll(t *testing.T) {
	t.Parallel()
	needNPM(t)
	is := is.New(t)
	env := map[string]string{"AOD_DATA_DIR": filepath.Join(t.TempDir(), "none"), "AOD_RUNTIME_DIR": apitest.RuntimeDir()}
	out, err := runtimesCLI(env, io.Discard, "runtimes", "install")
	is.NoErr(err) // install all
	names := catalogue.AgentRuntimes()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	is.Equal(len(lines), len(names)) // a line each
	for _, name := range names {
		p := pinned(name)
		re := regexp.MustCompile(`(?m)^(installed ` + name + `@` + regexp.QuoteMeta(p.Version) + ` in |` + name + ` ` + regexp.QuoteMeta(p.Version) + `: already installed$)`)
		is.True(re.MatchString(out)) // installed now or before
	}

	var stderr bytes.Buffer
	out, err = runtimesCLI(env, &stderr, "runtimes", "install")
	is.NoErr(err) // again
	var want string
	for _, name := range names {
		want += name + " " + pinned(name).Version + ": already installed\n"
	}
	is.Equal(out, want)           // all there
	is.Equal(stderr.String(), "") // nothing to do
}

func TestRuntimesInstallUnknownName(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dataDir := newDataDir(t)
	env := map[string]string{"AOD_DATA_DIR": dataDir}
	for _, name := range []string{"nosuch", "shell", "Claude"} {
		var stderr bytes.Buffer
		out, err := runtimesCLI(env, &stderr, "runtimes", "install", "claude", name)
		is.True(err != nil) // refused
		is.Equal(err.Error(), fmt.Sprintf("unknown agent runtime %q: want one or more of claude, codex, gemini, opencode", name))
		is.Equal(out, "")             // before installing anything,
		is.Equal(stderr.String(), "") // even the names that are right
	}
	_, err := os.Stat(filepath.Join(dataDir, "runtimes"))
	is.True(os.IsNotExist(err)) // the cache was not even made
}

func TestRuntimesMissingDataDir(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	missing := filepath.Join(t.TempDir(), "nowhere")
	want := "no aod data dir at " + missing + ": start `aod serve` there first or pass --data-dir (or --runtime-dir to fill a cache of its own)"
	for _, args := range [][]string{{"runtimes", "install", "claude"}, {"runtimes", "install"}, {"runtimes", "list"}} {
		_, err := runtimesCLI(map[string]string{"AOD_DATA_DIR": missing}, io.Discard, args...)
		is.True(err != nil)         // refused, from the environment's data dir
		is.Equal(err.Error(), want) // saying what to do
		_, err = runtimesCLI(nil, io.Discard, append([]string{"--data-dir", missing}, args...)...)
		is.True(err != nil)         // and from the flag's
		is.Equal(err.Error(), want) // alike
	}
	_, err := os.Stat(missing)
	is.True(os.IsNotExist(err)) // nothing was made there
}

// The runtimes commands read --runtime-dir and AOD_RUNTIME_DIR as serve
// does: one flag definition, one resolution.
func TestRuntimesUseServesRuntimeDir(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	usage := func(args ...string) string {
		out, err := runtimesCLI(nil, io.Discard, append(args, "--help")...)
		is.NoErr(err)
		return strings.Join(strings.Fields(regexp.MustCompile(`(?m)^ *--runtime-dir.*$`).FindString(out)), " ")
	}
	is.True(usage("serve") != "")                       // serve has the flag
	is.Equal(usage("runtimes", "list"), usage("serve")) // and the runtimes commands the same one

	fromEnv, fromFlag := t.TempDir(), t.TempDir()
	installed := pinned("codex")
	is.NoErr(os.MkdirAll(runtimes.NewInstaller(fromFlag, "", nil).Path(installed), 0o755))
	env := map[string]string{"AOD_DATA_DIR": filepath.Join(t.TempDir(), "none"), "AOD_RUNTIME_DIR": fromEnv}
	out, err := runtimesCLI(env, io.Discard, "runtimes", "list")
	is.NoErr(err)                          // the variable's cache, no data dir needed
	is.True(!strings.Contains(out, "yes")) // holds nothing
	out, err = runtimesCLI(env, io.Discard, "runtimes", "list", "--runtime-dir", fromFlag)
	is.NoErr(err)                                                                                      // the flag wins over the variable
	is.True(strings.Contains(out, "yes, "+filepath.Join(fromFlag, "openai-codex@"+installed.Version))) // codex is there
	out, err = runtimesCLI(env, io.Discard, "runtimes", "install", "codex", "--runtime-dir", fromFlag)
	is.NoErr(err) // so install has nothing to do
	is.Equal(out, "codex "+installed.Version+": already installed\n")
}

// lockedBuffer is a buffer written by the progress goroutine and read by
// the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Off a terminal: plain lines, one every so often while npm works, npm's
// lines without their escape codes.
func TestProgressPlain(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	is.NoErr(err)
	defer f.Close()
	is.True(newProgress(f, os.Getenv).width == nil) // a file is no terminal
	ptm, tty := openPTY(t)
	go io.Copy(io.Discard, ptm)
	is.True(newProgress(tty, func(string) string { return "xterm" }).width != nil) // a terminal is,
	is.True(newProgress(tty, func(string) string { return "dumb" }).width == nil)  // unless it is a dumb one

	var w lockedBuffer
	p := newProgress(&w, os.Getenv)
	p.every = 20 * time.Millisecond
	var n int64
	p.begin("codex@1.0.0", "@openai/codex", func() int64 { n += 2_500_000; return n })
	is.True(testkit.Eventually(5*time.Second, func() bool { return strings.Count(w.String(), "still installing") >= 2 })) // alive lines
	p.note("\x1b[33mnpm warn\x1b[0m deprecated\tthing\r")
	p.end()
	s := w.String()
	is.True(strings.HasPrefix(s, "installing codex@1.0.0 from npm (@openai/codex) …\n")) // what is installed
	is.True(regexp.MustCompile(`(?m)^  still installing codex@1\.0\.0: \d+\.\d MB after \d+s$`).MatchString(s))
	is.True(strings.Contains(s, "\n  npm warn deprecated thing\n")) // npm's line, cleaned
	is.True(!anyControl.MatchString(s))                             // no control characters at all
	after := s
	time.Sleep(3 * p.every)
	is.Equal(w.String(), after) // nothing more once ended
}

// On a terminal: the status line is redrawn in place, never wider than
// the terminal, lines npm prints are kept above it, and it is erased at
// the end.
func TestProgressLive(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	var w lockedBuffer
	p := &progress{w: &w, every: 10 * time.Millisecond, width: func() int { return 100 }}
	var n int64
	p.begin("opencode@1.18.33 [2/4]", "opencode-ai", func() int64 { n += 12_300_000; return n })
	is.True(testkit.Eventually(5*time.Second, func() bool { return strings.Contains(w.String(), " 24.6 MB  ") }))
	p.note("added 3 packages in 9s")
	p.end()
	s := w.String()
	is.True(regexp.MustCompile(`^\r\x1b\[K` + regexp.QuoteMeta(string(spinner[0])) + ` installing opencode@1\.18\.33 \[2/4\]  12\.3 MB  \d+\.\ds`).MatchString(s)) // the first frame (how soon it comes depends on the machine's load)
	is.True(strings.Contains(s, "\r\x1b[K"+string(spinner[1])+" installing opencode@1.18.33 [2/4]  12.3 MB  "))                                                    // the next, over it
	is.True(strings.Contains(s, "\r\x1b[K  added 3 packages in 9s\n"))                                                                                             // npm's line is kept, on a line of its own
	is.True(strings.HasSuffix(s, "\r\x1b[K"))                                                                                                                      // the status line is erased
	is.True(!strings.Contains(s, "\n  still installing") && !strings.Contains(s, "from npm"))                                                                      // no plain lines

	// A narrow terminal: the status line is cut to fit.
	var narrow lockedBuffer
	p = &progress{w: &narrow, every: 10 * time.Millisecond, width: func() int { return 20 }}
	p.begin("opencode@1.18.33 [2/4]", "opencode-ai", func() int64 { return 0 })
	is.True(testkit.Eventually(5*time.Second, func() bool { return strings.Count(narrow.String(), "\x1b[K") >= 3 }))
	p.end()
	for _, line := range strings.Split(narrow.String(), "\r\x1b[K")[1:] {
		is.True(len([]rune(line)) <= 19) // never wraps
	}
	is.True(strings.Contains(narrow.String(), "\r\x1b[K"+string(spinner[0])+" installing openco\r")) // 19 columns of it
}
