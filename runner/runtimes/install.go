package runtimes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/runner/internal/cmdout"
	"golang.org/x/sys/unix"
)

// Package is an agent CLI as npm ships it, at the version a server runs
// (the catalogue's pin unless overridden; see Pin).
type Package catalogue.Package

// versionRE is what a pinned version may look like: it becomes part of a
// directory name, so no slashes and no leading dot.
var versionRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$`)

// CheckVersions vets overrides of the pinned versions, by runtime name:
// only agent runtimes have one, and each must be an npm version (it names
// a directory of the cache).
func CheckVersions(versions map[string]string) error {
	for name, v := range versions {
		if rt, ok := catalogue.Lookup(name); !ok || rt.Package == nil {
			return fmt.Errorf("runtime version for %q: no such agent runtime", name)
		}
		if !versionRE.MatchString(v) {
			return fmt.Errorf("runtime version %q for %s: not an npm version", v, name)
		}
	}
	return nil
}

// MountDir is where installed CLIs appear inside a sandboxed sprite,
// read-only: <MountDir>/<slug>@<version>. It lies outside the system dirs
// because bwrap cannot make a mount point inside a read-only bind
// (/opt/aod/... fails with "Can't mkdir parents").
const MountDir = "/aod/runtimes"

// slug is the package's cache directory name: @scope/name@1.2.3 becomes
// scope-name@1.2.3.
func (p Package) slug() string {
	name := strings.ReplaceAll(strings.TrimPrefix(p.Name, "@"), "/", "-")
	return name + "@" + p.Version
}

// MountPath is where the package's tree is seen inside a sprite.
func (p Package) MountPath() string { return path.Join(MountDir, p.slug()) }

// Pin is the package of a runtime at the version versions names for it,
// else the catalogue's; nil for a runtime that installs nothing (shell).
func Pin(rt Runtime, versions map[string]string) *Package {
	entry, ok := catalogue.Lookup(rt.Name())
	if !ok || entry.Package == nil {
		return nil
	}
	p := Package(*entry.Package)
	if v := versions[rt.Name()]; v != "" {
		p.Version = v
	}
	return &p
}

// CacheDir is the cache of installed CLIs a server with this data dir
// uses: dir when given (--runtime-dir), else <dataDir>/runtimes; absolute.
func CacheDir(dataDir, dir string) (string, error) {
	if dir == "" {
		dir = filepath.Join(dataDir, "runtimes")
	}
	return filepath.Abs(dir)
}

// Installer installs npm packages into a cache shared by every sprite and
// every aod process using the same directory.
type Installer struct {
	dir string // absolute
	npm string // path of npm, "" when missing
	log *slog.Logger
}

// NewInstaller returns an installer into the cache dir (absolute) that
// runs the npm at npmPath ("" when the server has none: installs fail,
// saying so).
func NewInstaller(dir, npmPath string, log *slog.Logger) *Installer {
	return &Installer{dir: dir, npm: npmPath, log: log}
}

// installMarker is written into a package's directory just before it is
// renamed into place; it records what was installed and when.
const installMarker = ".aod-install.json"

// Path is the package's directory on the host, whether or not installed.
func (in *Installer) Path(p Package) string { return filepath.Join(in.dir, p.slug()) }

// Installed reports whether the package is in the cache already.
func (in *Installer) Installed(p Package) bool { return isDir(in.Path(p)) }

// Ensure returns the directory holding the installed package, installing
// it first if needed. A package is installed once per version: npm runs
// into a temporary directory that is renamed into place only once the
// install is complete, under an exclusive flock that holds across
// processes, so concurrent callers wait for the first and a killed
// install leaves nothing at the final path. ctx bounds the wait for the
// lock and the npm run.
func (in *Installer) Ensure(ctx context.Context, p Package) (string, error) {
	if !versionRE.MatchString(p.Version) {
		return "", fmt.Errorf("invalid version %q for %s", p.Version, p.Name)
	}
	final := in.Path(p)
	if isDir(final) {
		return final, nil
	}
	if err := os.MkdirAll(in.dir, 0o755); err != nil {
		return "", fmt.Errorf("create runtime dir: %w", err)
	}
	unlock, err := in.lock(ctx, p)
	if err != nil {
		return "", err
	}
	defer unlock()
	if isDir(final) {
		return final, nil // installed while we waited
	}
	// Whatever a killed install left behind: nobody else can be using it
	// while we hold the lock. ("#" appears in no package name or version,
	// so 1.0.4's pattern cannot match an install of 1.0.4-beta.)
	if stale, _ := filepath.Glob(filepath.Join(in.dir, tmpPrefix(p)+"*")); len(stale) > 0 {
		for _, d := range stale {
			in.log.Info("removing an unfinished runtime install", "dir", d)
			removeAll(d)
		}
	}
	if in.npm == "" {
		return "", errors.New("npm not found: install Node.js and npm on the server to run agent CLIs")
	}
	tmp, err := os.MkdirTemp(in.dir, tmpPrefix(p))
	if err != nil {
		return "", err
	}
	if err := in.npmInstall(ctx, p, tmp); err != nil {
		removeAll(tmp)
		return "", err
	}
	marker, _ := json.Marshal(map[string]string{
		"package": p.Name, "version": p.Version, "installed_at": time.Now().UTC().Format(time.RFC3339),
	})
	if err := os.WriteFile(filepath.Join(tmp, installMarker), append(marker, '\n'), 0o644); err != nil {
		removeAll(tmp)
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		removeAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		removeAll(tmp)
		return "", err
	}
	if d, err := os.Open(in.dir); err == nil {
		d.Sync() // the rename survives a crash
		d.Close()
	}
	return final, nil
}

// DiskUsage is the bytes of the package's files in the cache: its
// installed tree, else what installs of it under way (in any process) have
// written so far; 0 when there is neither.
func (in *Installer) DiskUsage(p Package) int64 {
	if final := in.Path(p); isDir(final) {
		return treeSize(final)
	}
	es, _ := os.ReadDir(in.dir)
	var n int64
	for _, e := range es {
		if strings.HasPrefix(e.Name(), tmpPrefix(p)) && e.IsDir() {
			n += treeSize(filepath.Join(in.dir, e.Name()))
		}
	}
	return n
}

// treeSize adds up the sizes of the regular files under dir, a file with
// several links once (npm links a native binary into two packages),
// skipping what vanishes or cannot be read while it looks (npm may still
// be writing).
func treeSize(dir string) int64 {
	var n int64
	linked := map[uint64]bool{}
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			if linked[st.Ino] {
				return nil
			}
			linked[st.Ino] = true
		}
		n += fi.Size()
		return nil
	})
	return n
}

// tmpPrefix starts the names of a package's temporary install dirs.
func tmpPrefix(p Package) string { return ".tmp-" + p.slug() + "#" }

// lock takes the package's install lock, waiting while another installer
// (goroutine or process) holds it. flock locks belong to the open file,
// so each call opens the file itself.
func (in *Installer) lock(ctx context.Context, p Package) (func(), error) {
	f, err := os.OpenFile(filepath.Join(in.dir, ".lock-"+p.slug()), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !logged {
			in.log.Info("waiting for another install of the same runtime", "package", p.Name, "version", p.Version)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// npmInstall runs npm on the host (never in a sprite: the cache is shared
// and the sprite may have no network). Its output is logged line by line;
// a failure carries the tail of its stderr.
func (in *Installer) npmInstall(ctx context.Context, p Package, prefix string) error {
	spec := p.Name + "@" + p.Version
	in.log.Info("installing runtime", "package", spec, "dir", in.Path(p))
	start := time.Now()
	cmd := exec.CommandContext(ctx, in.npm, "install", "--no-audit", "--no-fund", "--prefix", prefix, spec)
	cmd.Dir = prefix
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	// Its own process group: cancelling kills npm and everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stderr := &cmdout.Tail{Max: 8 << 10}
	cmd.Stdout = &logLines{log: in.log, pkg: spec}
	cmd.Stderr = io.MultiWriter(stderr, &logLines{log: in.log, pkg: spec})
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("npm install %s stopped: %w", spec, context.Cause(ctx))
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.Last(2000))
		return fmt.Errorf("npm install %s failed (%v)\nstderr:\n%s", spec, err, msg)
	}
	if p.Bin != "" {
		if _, err := os.Stat(filepath.Join(prefix, "node_modules", ".bin", p.Bin)); err != nil {
			return fmt.Errorf("npm install %s did not install the %s command", spec, p.Bin)
		}
	}
	in.log.Info("installed runtime", "package", spec, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// logLines logs each line written to it.
type logLines struct {
	log  *slog.Logger
	pkg  string
	mu   sync.Mutex
	part []byte
}

func (l *logLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(l.part[:i])); line != "" {
			l.log.Info("npm", "package", l.pkg, "line", line)
		}
		l.part = l.part[i+1:]
	}
	if len(l.part) > 4<<10 {
		l.part = l.part[:0] // a line nobody needs whole
	}
	return len(b), nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// removeAll removes a tree even where npm left read-only directories.
func removeAll(dir string) {
	if os.RemoveAll(dir) == nil {
		return
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(dir)
}
