// Package local is the sprite backend of one machine: each sprite is a
// directory tree under the data dir whose commands run under bubblewrap
// (when a probe run proves it works) or as a plain, killable process group,
// with prlimit's rlimits. It implements the runner/sprite contract.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/sprite"
	"golang.org/x/sys/unix"
)

// Sandbox modes.
const (
	SandboxAuto  = "auto"  // bwrap when the probe run works, else none (loudly)
	SandboxBwrap = "bwrap" // bwrap or refuse to start
	SandboxNone  = "none"  // a plain process group as the server's user
)

// Limits are per-process resource limits inside a sprite (setrlimit, by
// the sprite's init or prlimit). A zero field sets no limit (the runner
// fills in its defaults).
type Limits struct {
	Processes     uint64 // the cgroup's pids.max, and RLIMIT_NPROC
	FileSizeBytes uint64 // RLIMIT_FSIZE
	CPUSeconds    uint64 // RLIMIT_CPU
	MemoryBytes   uint64 // the cgroup's memory limit, else RLIMIT_DATA per process
	DiskBytes     uint64 // the sprite tree's size, watched while a command runs
}

type rlimit struct {
	resource int
	value    uint64
}

// rlimits are the limits to set, by setrlimit resource.
func (l Limits) rlimits() []rlimit {
	var out []rlimit
	for _, r := range []rlimit{{unix.RLIMIT_NPROC, l.Processes}, {unix.RLIMIT_FSIZE, l.FileSizeBytes}, {unix.RLIMIT_CPU, l.CPUSeconds}, {unix.RLIMIT_DATA, l.MemoryBytes}} {
		if r.value > 0 {
			out = append(out, r)
		}
	}
	return out
}

func (l *Limits) set(resource int, v uint64) {
	switch resource {
	case unix.RLIMIT_NPROC:
		l.Processes = v
	case unix.RLIMIT_FSIZE:
		l.FileSizeBytes = v
	case unix.RLIMIT_CPU:
		l.CPUSeconds = v
	case unix.RLIMIT_DATA:
		l.MemoryBytes = v
	}
}

// Config sets up a Backend.
type Config struct {
	DataDir string // sprites live in <DataDir>/sprites
	Sandbox string // SandboxAuto, SandboxBwrap or SandboxNone
	Limits  Limits
	// Drain is how long output may trail a command's exit (something it
	// started in another session still holding the pipes).
	Drain time.Duration
	// EgressAllow are the operator's exceptions to the egress proxy's
	// address rules (--egress-allow).
	EgressAllow []egress.Rule
	// Resolver and Dial serve the egress proxy (nil: the system's; tests
	// map names to local upstreams).
	Resolver egress.Resolver
	Dial     func(ctx context.Context, network, address string) (net.Conn, error)
	// Record is told of every connection a sprite asked the proxy for.
	Record Recorder
	// GitCredentials answers the git credential helper of a bwrap sprite
	// (see gitcred.go); nil: it gets nothing.
	GitCredentials GitCredentials
	// WarmSprites is how many sprites bwrap mode keeps started ahead, so a
	// new session's first command starts at once (see warm.go); 0: none.
	WarmSprites int
	Logger      *slog.Logger
}

// Backend keeps each sprite as <data dir>/sprites/<name>/{home,workspace,tmp,mounts}
// and runs its commands under bubblewrap, or as a plain process group in
// "none" mode.
type Backend struct {
	root     string   // <data dir>/sprites
	sandbox  string   // SandboxBwrap or SandboxNone
	bwrap    string   // path of the bwrap binary (bwrap mode)
	rootArgs []string // the read-only root's system dirs, /proc and /dev
	kernArgs []string // /proc and /dev alone (under a writable root)
	// rootfs makes each sprite's writable root (userns mode); nil: the
	// sprite's root is the host's system dirs, read-only (rootfsWhy).
	rootfs    *writableRoot
	rootfsWhy string
	rootMu    sync.Mutex
	rootHeld  map[string]int // sprite dir → commands holding its root mounted
	initBin   string         // aod's own binary, every bwrap sprite's init (see init.go)
	// userns: aod is root, so each bwrap sprite's processes run as its own
	// range of unprivileged host uids (see identity.go).
	userns  bool
	ids     ids
	warm    *warmPool  // bwrap mode with Config.WarmSprites; nil: none
	net     *egressNet // bwrap mode
	cg      *cgroups   // bwrap mode, where aod can make cgroups
	cgWhy   string     // why cg is nil
	prlimit string     // path of prlimit, "" when missing (none mode)
	limits  Limits
	drain   time.Duration // how long output may trail a dead command
}

var _ sprite.Backend = (*Backend)(nil)

// New makes the sprites directory and settles the sandbox: bwrap mode
// fails unless the probe run works; auto falls back to none with a loud
// warning, as none itself warns.
func New(cfg Config) (*Backend, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := newBackend(cfg.DataDir, cfg.Limits, cfg.Drain)
	if err != nil {
		return nil, err
	}
	b.net.allow, b.net.record, b.net.creds = cfg.EgressAllow, cfg.Record, cfg.GitCredentials
	b.net.proxy.Resolver, b.net.proxy.Dial, b.net.proxy.Logger = cfg.Resolver, cfg.Dial, log
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch cfg.Sandbox {
	case SandboxBwrap:
		if err := b.useBwrap(ctx, cfg.DataDir); err != nil {
			return nil, fmt.Errorf("sandbox bwrap: %w (use --sandbox none to run sessions unsandboxed)", err)
		}
	case SandboxAuto:
		if err := b.useBwrap(ctx, cfg.DataDir); err != nil && os.Geteuid() == 0 {
			// As root, "unsandboxed" would mean sessions run as host root.
			return nil, fmt.Errorf("sandbox auto: running as root, and bubblewrap with an unprivileged uid range per sprite does not work here: %w "+
				"(install bubblewrap and allow user namespaces, run aod as its own user, or use --sandbox none to run sessions as root, unsandboxed)", err)
		} else if err != nil {
			log.Warn("!!! SANDBOX OFF: bubblewrap does not work here, so sessions run unsandboxed as the server's user "+
				"and can read and change everything it can, including the data dir. Install bubblewrap or use --sandbox bwrap to refuse.",
				"probe_error", err.Error())
		}
	case SandboxNone:
		log.Warn("!!! SANDBOX OFF (--sandbox none): sessions run unsandboxed as the server's user " +
			"and can read and change everything it can, including the data dir")
	default:
		return nil, fmt.Errorf("unknown sandbox %q (want auto, bwrap or none)", cfg.Sandbox)
	}
	if b.prlimit == "" && b.sandbox == SandboxNone {
		log.Warn("prlimit (util-linux) not found: sprites run without process, file size and CPU limits")
	}
	if b.sandbox == SandboxBwrap && cfg.WarmSprites > 0 {
		b.warm = newWarmPool(b, cfg.WarmSprites, log)
		b.warm.start()
	}
	if b.sandbox == SandboxBwrap {
		if b.rootfs == nil {
			log.Warn("sprites have a read-only root: apt packages cannot be installed and only the sprite's home, /workspace and /tmp are writable "+
				"(a writable root, an overlay over the host's system dirs, needs aod to run as root)", "why", b.rootfsWhy)
		}
		if b.cg == nil {
			log.Warn("!!! no cgroups for sprites ("+b.cgWhy+"): a sprite's memory is limited per process (RLIMIT_DATA), not in total, "+
				"and its process count per sprite uid (RLIMIT_NPROC); run aod as root on a cgroup v2 host, or give it a delegated subtree, to bound them per sprite",
				"memory_limit", b.limits.MemoryBytes, "pids_limit", b.limits.Processes)
		}
	}
	return b, nil
}

// Sandbox reports the isolation in use: SandboxBwrap or SandboxNone.
func (b *Backend) Sandbox() string { return b.sandbox }

// Enforced says how each of a sprite's limits is enforced, and what its
// root filesystem is, for /health.
func (b *Backend) Enforced() map[string]string {
	out := map[string]string{"disk": "watched: the sprite's files are measured while a command runs", "file_size": "rlimit"}
	switch {
	case b.sandbox == SandboxNone && b.prlimit == "":
		out["memory"], out["pids"], out["file_size"] = "none", "none", "none"
	case b.sandbox == SandboxNone:
		out["memory"], out["pids"] = "rlimit (per process)", "rlimit (per server uid: no sandbox)"
	case b.cg != nil:
		v := "cgroup v" + strconv.Itoa(b.cg.version)
		out["memory"], out["pids"] = v, v
	default:
		out["memory"], out["pids"] = "rlimit (per process): "+b.cgWhy, "rlimit (per sprite uid)"
	}
	if b.limits.DiskBytes == 0 {
		out["disk"] = "none"
	}
	switch {
	case b.rootfs != nil:
		out["root"] = "writable: an overlay of the host's system dirs (read-only below it) and the sprite's own layer"
	case b.sandbox == SandboxBwrap:
		out["root"] = "read-only: " + b.rootfsWhy
	default:
		out["root"] = "the host's own (no sandbox)"
	}
	return out
}

func newBackend(dataDir string, limits Limits, drain time.Duration) (*Backend, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(abs, "sprites")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create sprites dir: %w", err)
	}
	b := &Backend{root: root, sandbox: SandboxNone, limits: limits, drain: drain, net: &egressNet{proxy: &egress.Proxy{}}, rootHeld: map[string]int{}}
	b.prlimit = FindBinary("prlimit")
	return b, nil
}

// FindBinary looks a host command up in PATH, then in the usual system
// directories (a server started with a minimal PATH still finds them); ""
// when it is nowhere.
func FindBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, dir := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// findBwrap locates bubblewrap (a variable so a test can hand New a broken one).
var findBwrap = func() string { return FindBinary("bwrap") }

// useBwrap switches the backend to bubblewrap and proves it works: a tiny
// sandbox built exactly like a session's must start and must not see the
// sprites directory.
func (b *Backend) useBwrap(ctx context.Context, dataDir string) error {
	bin := findBwrap()
	if bin == "" {
		return errors.New("bwrap not found in PATH")
	}
	dirArgs, kernArgs, err := systemRootArgs(dataDir)
	if err != nil {
		return err
	}
	rootArgs := append(slices.Clip(dirArgs), kernArgs...)
	initBin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find aod's own binary (each sprite's init): %w", err)
	}
	if b.net.dir == "" {
		if b.net.dir, err = socketDir(b.root); err != nil {
			return fmt.Errorf("egress proxy sockets: %w", err)
		}
	}
	b.sandbox, b.bwrap, b.rootArgs, b.kernArgs, b.initBin, b.userns = SandboxBwrap, bin, rootArgs, kernArgs, initBin, os.Geteuid() == 0
	sweepWarm(b.root) // a previous process's; its inits died with it
	b.ids.load(b.root)
	b.cg, b.cgWhy = detectCgroups()
	b.rootfs, b.rootfsWhy = nil, "aod is not root (a writable root needs overlays mounted by root)"
	if err := b.probe(ctx); err != nil {
		b.sandbox, b.bwrap, b.rootArgs, b.kernArgs, b.initBin, b.userns, b.cg = SandboxNone, "", nil, nil, "", false, nil
		return err
	}
	// The sandbox works: sprites get a writable root where aod can make
	// one (its base layer is made in the background; the first sprite
	// waits for it, the server's start does not).
	if b.userns {
		if b.rootfs, err = newWritableRoot(b.root, dataDir); err != nil {
			b.rootfs, b.rootfsWhy = nil, err.Error()
		}
	}
	return nil
}

func (b *Backend) probe(ctx context.Context) error {
	dir, err := os.MkdirTemp(b.root, ".probe-")
	if err != nil {
		return err
	}
	defer removeTree(dir)
	sp := &localSprite{b: b, name: filepath.Base(dir), dir: dir}
	if err := sp.makeDirs(); err != nil {
		return err
	}
	defer b.ids.release(sp.name)
	// Inside, the command must be uid 0 and, when aod is root, host uid 0
	// must not be mapped (uid_map's second column is the host uid).
	script := `test ! -e "$1" || exit 1; test "$(id -u)" = 0 || { echo "runs as uid $(id -u), not 0" >&2; exit 2; }`
	if b.userns {
		script += `; read -r inner outer count < /proc/self/uid_map; test "$outer" = "$2" || { echo "host uid $outer, not the sprite's $2" >&2; exit 2; }`
	}
	var stderr bytes.Buffer
	p, err := sp.Start(ctx, sprite.ExecRequest{
		Argv:   []string{"/bin/sh", "-c", script, "sh", b.root, strconv.Itoa(sp.uid)},
		Env:    []string{"PATH=" + sprite.DefaultPath},
		Stderr: &stderr,
	})
	if err != nil {
		return err
	}
	timer := time.AfterFunc(30*time.Second, func() { p.Signal(syscall.SIGKILL) })
	st, err := p.Wait()
	timer.Stop()
	switch {
	case err != nil:
		return err
	case st.Code == 1 && stderr.Len() == 0:
		return fmt.Errorf("the sprites directory %s is visible inside the sandbox", b.root)
	case st.Code != 0:
		return fmt.Errorf("probe run exited %d: %s", st.Code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// systemRootArgs builds the sandbox's read-only root from system
// directories only: /usr, the usr-merge links (or the real dirs), /etc and
// /opt. Nothing else of the host exists inside, so the data dir (aod.db,
// the key file, other sprites) is invisible; should it lie inside one of
// those dirs, a tmpfs hides it. kern are the arguments for /proc and /dev
// (and a resolv.conf kept elsewhere), which a writable root needs too.
func systemRootArgs(dataDir string) (dirs, kern []string, err error) {
	args := []string{"--ro-bind", "/usr", "/usr"}
	bound := []string{"/usr"}
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
		case fi.Mode()&fs.ModeSymlink != 0:
			if target, err := os.Readlink(d); err == nil {
				args = append(args, "--symlink", target, d)
			}
		case fi.IsDir():
			args = append(args, "--ro-bind", d, d)
			bound = append(bound, d)
		}
	}
	for _, d := range []string{"/etc", "/opt"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			args = append(args, "--ro-bind", d, d)
			bound = append(bound, d)
		}
	}
	// A resolv.conf managed elsewhere (systemd-resolved links it into /run)
	// needs its target too, or nothing resolves inside.
	if target, err := filepath.EvalSymlinks("/etc/resolv.conf"); err == nil && target != "/etc/resolv.conf" && !underAny(target, bound) {
		kern = append(kern, "--ro-bind", target, target)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if underAny(abs, bound) {
		args = append(args, "--tmpfs", abs)
	}
	// bwrap's /dev is a tmpfs as large as half the RAM; its /dev/shm gets a
	// container's usual 64 MiB instead, and the rest is made read-only in
	// bwrapArgs, so no sprite can fill the host's memory through them.
	kern = append(kern, "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", strconv.Itoa(shmSize), "--tmpfs", "/dev/shm")
	// A fresh /proc still lets the sprite's root write kernel tunables
	// (kernel.core_pattern runs a program as host root) and poke the
	// hardware interfaces: they are read-only, as container runtimes keep
	// them. The bind's source is the host's /proc, so until sprites have a
	// network namespace of their own the values read are the same.
	for _, p := range procReadOnly {
		if _, err := os.Lstat(p); err == nil {
			kern = append(kern, "--ro-bind", p, p)
		}
	}
	return args, kern, nil
}

// systemDirs are the sandbox root's host directories (read-only, made by
// bwrap's binds: nothing can be created in them).
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/proc", "/dev"}

// shmSize bounds a sprite's /dev/shm.
const shmSize = 64 << 20

// procReadOnly are the parts of /proc a sprite may read but never write.
var procReadOnly = []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if under(p, d) {
			return true
		}
	}
	return false
}

func (b *Backend) spriteDir(name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("invalid sprite name %q", name)
	}
	return filepath.Join(b.root, name), nil
}

func (b *Backend) newSprite(name string, opts sprite.Options) (*localSprite, error) {
	dir, err := b.spriteDir(name)
	if err != nil {
		return nil, err
	}
	if opts.Layer != "" && (b.rootfs == nil || !validLayerKey(opts.Layer)) {
		return nil, fmt.Errorf("package layer %q: not available here", opts.Layer)
	}
	s := &localSprite{b: b, name: name, dir: dir, mounts: make([]string, len(opts.Mounts)), network: opts.Network, layer: opts.Layer}
	for i, m := range opts.Mounts {
		m = path.Clean(m)
		if m == "" || !path.IsAbs(m) || under(m, sprite.HomeDir) || under(m, sprite.WorkspaceDir) || under(m, sprite.TmpDir) {
			continue // lands in the sprite's own tree
		}
		s.mounts[i] = m
	}
	for _, bd := range opts.ReadOnlyBinds {
		at := path.Clean(bd.At)
		if !path.IsAbs(at) || at == "/" || under(at, sprite.HomeDir) || under(at, sprite.WorkspaceDir) || under(at, sprite.TmpDir) ||
			!filepath.IsAbs(bd.Host) {
			return nil, fmt.Errorf("invalid read-only bind %s -> %s", bd.Host, bd.At)
		}
		s.binds = append(s.binds, sprite.Bind{Host: filepath.Clean(bd.Host), At: at})
	}
	return s, nil
}

func (b *Backend) Create(ctx context.Context, name string, opts sprite.Options) (sprite.Sprite, error) {
	s, err := b.newSprite(name, opts)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(s.dir); errors.Is(err, fs.ErrNotExist) {
		b.warm.claim(s) // a new sprite: a warm tree becomes its own
	}
	if err := s.makeDirs(); err != nil {
		return nil, err
	}
	return s, nil
}

// own gives the sprite its uid range (userns mode). A tree made before
// sprites had ranges belongs to host root: it is handed to the range, so
// the sprite's processes can still change their own files.
func (s *localSprite) own() error {
	if !s.b.userns {
		return nil
	}
	home := filepath.Join(s.dir, "home")
	uid, err := s.b.ids.owner(s.name, home)
	if err != nil {
		return err
	}
	s.uid = uid
	var st syscall.Stat_t
	if err := syscall.Lstat(home, &st); err == nil && int(st.Uid) != uid {
		chownTree(s.dir, uid)
	}
	return nil
}

func (b *Backend) Get(ctx context.Context, name string, opts sprite.Options) (sprite.Sprite, error) {
	s, err := b.newSprite(name, opts)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(s.dir); err != nil || !fi.IsDir() {
		return nil, sprite.ErrNotFound
	}
	if err := s.own(); err != nil {
		return nil, err
	}
	if err := s.prepareRoot(); err != nil {
		return nil, err
	}
	return s, nil
}

func (b *Backend) Delete(ctx context.Context, name string) error {
	dir, err := b.spriteDir(name)
	if err != nil {
		return err
	}
	b.warm.drop(name)
	defer b.ids.release(name)
	return removeTree(dir)
}

// removeTree removes a sprite's tree. Tools leave read-only trees behind
// (Go's module cache): when a first try fails, every directory is made
// writable and it tries again. (os.RemoveAll never follows a link: it
// removes the link.)
func removeTree(dir string) error {
	// A writable root's overlays go first: never remove through them.
	if err := unmountBeneath(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	chmodDirsBeneath(dir)
	return os.RemoveAll(dir)
}

// Close stops the backend's background work: the warm sprites go, the
// sprites' writable roots are unmounted (a sprite used again mounts its
// own) and a temporary socket directory is removed.
func (b *Backend) Close() {
	b.warm.close()
	if b.rootfs != nil {
		<-b.rootfs.ready // a base layer still being made is not left half done
		unmountBeneath(b.root)
	}
	if b.net.dir != "" && !under(b.net.dir, b.root) {
		os.RemoveAll(b.net.dir) // a temporary directory of its own (socketDir)
	}
}

func (b *Backend) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(b.root)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") { // .egress, .probe-*: not sprites
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// localSprite is one session's directory tree.
type localSprite struct {
	b       *Backend
	name    string
	dir     string
	mounts  []string      // by resource position; "" = in the sprite tree
	binds   []sprite.Bind // shared host directories, read-only
	uid     int           // first host uid of its range (userns mode), else 0
	network sprite.Network
	layer   string // its environment's package layer (a writable root's), "" for none
}

func (s *localSprite) Name() string { return s.name }

// makeDirs makes the sprite's tree: its directory (the server's, never
// visible inside) and below it the parts its processes see, which belong to
// the sprite's uid range in userns mode.
func (s *localSprite) makeDirs() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	if err := s.own(); err != nil {
		return err
	}
	dirs := []string{filepath.Join(s.dir, "home"), filepath.Join(s.dir, "workspace"), filepath.Join(s.dir, "tmp")}
	for i, m := range s.mounts {
		if m != "" {
			dirs = append(dirs, filepath.Join(s.dir, "mounts", strconv.Itoa(i)))
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if s.uid > 0 {
			if err := os.Lchown(d, s.uid, s.uid); err != nil {
				return err
			}
		}
	}
	// /tmp as on any machine: programs that drop to another user (apt to
	// _apt) write there too. The tree's own directory keeps the host out.
	if err := os.Chmod(filepath.Join(s.dir, "tmp"), 0o1777); err != nil {
		return err
	}
	return s.prepareRoot()
}

// prepareRoot makes the sprite's "/" directory and records its package
// layer, if it has a writable root (mounted only while a command starts or
// runs, see holdRoot).
func (s *localSprite) prepareRoot() error {
	if s.b.rootfs == nil || s.uid == 0 {
		return nil
	}
	if err := s.b.rootfs.prepare(s.dir, s.uid, s.layer); err != nil {
		return fmt.Errorf("sprite %s: writable root: %w", s.name, err)
	}
	return nil
}

// owner is who the server's writes into the tree belong to: the sprite's
// root, -1 to leave them the server's.
func (s *localSprite) owner() int {
	if s.uid > 0 {
		return s.uid
	}
	return -1
}

// hostPath is where sprite path p lives on the host, "" for a path
// outside the sprite.
func (s *localSprite) hostPath(p string) string {
	base, rel := s.locate(p)
	if base == "" {
		return ""
	}
	return filepath.Join(base, rel)
}

// locate splits sprite path p into the host directory of the tree part
// holding it (home, workspace, tmp or a mount: directories the server made,
// out of the sprite's reach) and the path below it; base is "" for a path
// outside the sprite.
func (s *localSprite) locate(p string) (base, rel string) {
	p = path.Clean(p)
	for _, m := range []struct{ at, dir string }{{sprite.HomeDir, "home"}, {sprite.WorkspaceDir, "workspace"}, {sprite.TmpDir, "tmp"}} {
		if under(p, m.at) {
			return filepath.Join(s.dir, m.dir), strings.TrimPrefix(strings.TrimPrefix(p, m.at), "/")
		}
	}
	best := -1
	for i, m := range s.mounts {
		if m != "" && under(p, m) && (best < 0 || len(m) > len(s.mounts[best])) {
			best = i
		}
	}
	if best < 0 {
		return "", ""
	}
	return filepath.Join(s.dir, "mounts", strconv.Itoa(best)), strings.TrimPrefix(strings.TrimPrefix(p, s.mounts[best]), "/")
}

func (s *localSprite) Path(p string) string {
	if s.b.sandbox == SandboxBwrap {
		return path.Clean(p)
	}
	if hp := s.hostPath(p); hp != "" {
		return hp
	}
	// Unsandboxed, a shared directory is used where it lies on the host.
	p = path.Clean(p)
	for _, bd := range s.binds {
		if under(p, bd.At) {
			return filepath.Join(bd.Host, strings.TrimPrefix(p, bd.At))
		}
	}
	return p
}

// ReadFile reads a regular file of the sprite; a symlink, FIFO or device
// anywhere on the way is refused, never followed (see confined.go).
func (s *localSprite) ReadFile(ctx context.Context, p string) ([]byte, error) {
	base, rel := s.locate(p)
	if base == "" {
		return nil, fmt.Errorf("%s is outside the sprite", p)
	}
	return readBeneath(base, rel)
}

// WriteFile writes a regular file of the sprite, creating its directories,
// without following any link the sprite may have planted on the way.
func (s *localSprite) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode) error {
	base, rel := s.locate(p)
	if base == "" {
		return fmt.Errorf("%s is outside the sprite", p)
	}
	if err := writeBeneath(base, rel, data, mode, s.owner()); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// bwrapArgs maps the sprite tree onto the system root: extra mounts first
// (parents before children, so /home would not hide /home/sprite), then
// home, workspace and tmp.
func (s *localSprite) bwrapArgs(dir, socket string) []string {
	args := []string{"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--unshare-net", "--die-with-parent"}
	if !s.b.userns {
		// Unprivileged, bwrap maps the server's own uid to root inside.
		args = append(args, "--unshare-user", "--uid", "0", "--gid", "0")
	}
	// As root, bwrap keeps its capabilities for the sprite's init, which
	// needs them to map the sprite's uid range; the command itself runs as
	// that range, with no capability on the host.
	writable := s.b.rootfs != nil && s.uid > 0
	if writable {
		args = append(append(args, s.b.rootfs.bwrapArgs(s.dir)...), s.b.kernArgs...)
	} else {
		args = append(args, s.b.rootArgs...)
	}
	type bind struct{ flag, src, dst string }
	binds := []bind{{"--ro-bind", s.b.initBin, initPath}, {"--bind", socket, egressSocket}}
	// Shared directories sit outside the system dirs (a mount point cannot
	// be made inside a read-only bind), so none hides another.
	for _, bd := range s.binds {
		binds = append(binds, bind{"--ro-bind", bd.Host, bd.At})
	}
	var mounts []bind
	for i, m := range s.mounts {
		if m != "" {
			mounts = append(mounts, bind{"--bind", filepath.Join(s.dir, "mounts", strconv.Itoa(i)), m})
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return mounts[i].dst < mounts[j].dst })
	binds = append(append(binds, mounts...), bind{"--bind", filepath.Join(s.dir, "home"), sprite.HomeDir},
		bind{"--bind", filepath.Join(s.dir, "workspace"), sprite.WorkspaceDir}, bind{"--bind", filepath.Join(s.dir, "tmp"), sprite.TmpDir})
	// The directories above the mount points are bwrap's, made 0700 unless
	// told otherwise: the sprite's unprivileged root must be able to pass.
	parents := map[string]bool{}
	for _, b := range binds {
		for d := path.Dir(b.dst); d != "/"; d = path.Dir(d) {
			if !underAny(d, systemDirs) {
				parents[d] = true
			}
		}
	}
	for _, d := range slices.Sorted(maps.Keys(parents)) {
		args = append(args, "--perms", "0755", "--dir", d)
	}
	for _, b := range binds {
		args = append(args, b.flag, b.src, b.dst)
	}
	// The root bwrap builds is a tmpfs as large as half the RAM: read-only
	// once every mount point exists, so a sprite writes only its own tree
	// (on disk, under the data dir) and the sized /dev/shm. A writable
	// root is the sprite's tree already.
	args = append(args, "--remount-ro", "/dev")
	if !writable {
		args = append(args, "--remount-ro", "/")
	}
	return append(args, "--chdir", dir, "--")
}

// sandboxArgs are bwrapArgs, with a writable root mounted for them and
// their mount points in it made safe (see writableRoot.secure). release
// says bwrap no longer needs the root's host-side mounts.
func (s *localSprite) sandboxArgs(dir, socket string) (args []string, release func(), err error) {
	args = s.bwrapArgs(dir, socket)
	if s.b.rootfs == nil || s.uid == 0 {
		return args, func() {}, nil
	}
	if release, err = s.b.holdRoot(s); err != nil {
		return nil, nil, err
	}
	if err := s.b.rootfs.secure(s.dir, s.uid, args); err != nil {
		release()
		return nil, nil, fmt.Errorf("sprite %s: %w", s.name, err)
	}
	return args, release, nil
}

// holdRoot mounts sprite s's writable root on the host for a command's
// bubblewrap to bind, unless a command of s holds it already. The last
// release unmounts it: a sandbox keeps the overlays it bound, and the
// host's mount table, which every new mount namespace copies, holds only
// the roots of commands being started or running, not every sprite's.
func (b *Backend) holdRoot(s *localSprite) (release func(), err error) {
	b.rootMu.Lock()
	defer b.rootMu.Unlock()
	if b.rootHeld[s.dir] == 0 {
		if err := b.rootfs.mount(s.dir, s.uid, s.layer); err != nil {
			return nil, fmt.Errorf("sprite %s: writable root: %w", s.name, err)
		}
	}
	b.rootHeld[s.dir]++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.rootMu.Lock()
			defer b.rootMu.Unlock()
			if b.rootHeld[s.dir]--; b.rootHeld[s.dir] <= 0 {
				delete(b.rootHeld, s.dir)
				unmountBeneath(filepath.Join(s.dir, "fs"))
			}
		})
	}, nil
}

func (s *localSprite) Start(ctx context.Context, req sprite.ExecRequest) (sprite.Process, error) {
	if len(req.Argv) == 0 {
		return nil, errors.New("empty command")
	}
	if s.network.Limited && s.b.sandbox == SandboxNone {
		return nil, errors.New("limited networking cannot be enforced without a sandbox")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(s.dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("sprite %s: directory missing: %w", s.name, sprite.ErrNotFound)
	}
	dir := req.Dir
	if dir == "" {
		dir = sprite.HomeDir
	}
	if s.b.sandbox == SandboxBwrap {
		if w := s.b.warm.take(s); w != nil {
			if p, err := s.startWarm(w, req, dir); err == nil {
				return p, nil
			}
			// A warm sprite that cannot take its command is gone: start cold.
			s.b.warm.discard(w)
		}
		return s.startBwrap(req, dir)
	}
	argv := append([]string{}, req.Argv...)
	cwd := s.hostPath(dir)
	if cwd == "" {
		return nil, fmt.Errorf("working directory %s is outside the sprite", dir)
	}
	if !strings.Contains(argv[0], "/") {
		// Resolve with the sprite's PATH, not the server's.
		if argv[0] = lookPathIn(argv[0], envValue(req.Env, "PATH")); argv[0] == "" {
			return nil, fmt.Errorf("%s: command not found", req.Argv[0])
		}
	}
	if args := s.b.prlimitArgs(); len(args) > 0 {
		argv = append(append(args, "--"), argv...)
	}
	p, err := s.launch(argv, req.Env, cwd, nil, req.Stdin != nil, nil, nil)
	if err != nil {
		return nil, err
	}
	p.run(s.dir, req)
	return p, nil
}

// startBwrap starts a command in a sandbox of its own, made for it.
func (s *localSprite) startBwrap(req sprite.ExecRequest, dir string) (*localProcess, error) {
	proxy, err := s.b.net.serve(s.name, s.network)
	if err != nil {
		return nil, err
	}
	ia := initArgs{uidBase: s.uid, socket: egressSocket, forwards: forwards(s.network), limits: s.b.limits}
	group, err := s.b.group(&ia, s.name)
	if err != nil {
		proxy.close()
		return nil, err
	}
	ia.argv = s.b.commandArgv(&ia, req.Argv)
	var extra []*os.File
	if group != nil {
		extra = group.procs
	}
	args, release, err := s.sandboxArgs(dir, proxy.path)
	if err != nil {
		proxy.close()
		if group != nil {
			group.remove()
		}
		return nil, err
	}
	argv := append(append(append([]string{s.b.bwrap}, args...), initPath), ia.args()...)
	env := append(slices.Clip(req.Env), egress.ProxyEnv(egress.RelayAddr)...)
	p, err := s.launch(argv, env, s.dir, extra, req.Stdin != nil, proxy, group)
	if err != nil {
		release()
		return nil, err
	}
	p.release = release
	p.run(s.dir, req)
	return p, nil
}

// group makes a bwrap command's cgroup, if aod can, and tells its init to
// join it.
func (b *Backend) group(ia *initArgs, name string) (*cgroup, error) {
	if b.cg == nil {
		return nil, nil
	}
	g, err := b.cg.newGroup(name, b.limits.MemoryBytes, b.limits.Processes)
	if err != nil {
		return nil, fmt.Errorf("sprite cgroup: %w", err)
	}
	ia.limits.MemoryBytes = 0 // the cgroup bounds the sprite's total
	for i := range g.procs {
		ia.cgroupFds = append(ia.cgroupFds, 3+i)
	}
	return g, nil
}

// commandArgv is a bwrap command as its init runs it: without a cgroup
// (ia says), its memory is bounded per process with RLIMIT_DATA, set on
// the command only (the init is a Go program whose runtime must not run
// short itself).
func (b *Backend) commandArgv(ia *initArgs, argv []string) []string {
	if ia.limits.MemoryBytes > 0 && b.prlimit != "" {
		argv = append([]string{b.prlimit, "--data=" + strconv.FormatUint(ia.limits.MemoryBytes, 10), "--"}, argv...)
		ia.limits.MemoryBytes = 0
	}
	return argv
}

// launch starts argv with pipes for its output (and its input when
// stdin), in its own session and process group so one kill reaches
// everything it starts; it dies with the server rather than outliving it.
// extra are passed from fd 3 on and closed here once the child has them.
// proxy and group belong to the process from here on, even on failure.
func (s *localSprite) launch(argv, env []string, cwd string, extra []*os.File, stdin bool, proxy *serving, group *cgroup) (*localProcess, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = cwd
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}

	p := &localProcess{drain: s.b.drain, proxy: proxy, group: group, limits: s.b.limits, watchDone: make(chan struct{})}
	var childEnds []*os.File
	closeAll := func() {
		for _, f := range append(append(childEnds, extra...), p.stdinW, p.outR, p.errR) {
			if f != nil {
				f.Close()
			}
		}
		if proxy != nil {
			proxy.close()
		}
		if group != nil {
			group.remove()
		}
	}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, err
		}
		cmd.Stdin, p.stdinW = r, w
		childEnds = append(childEnds, r)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	p.outR, cmd.Stdout = outR, outW
	childEnds = append(childEnds, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	p.errR, cmd.Stderr = errR, errW
	childEnds = append(childEnds, errW)
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, err
	}
	for _, f := range append(childEnds, extra...) {
		f.Close() // the child has them
	}
	if group != nil {
		group.procs = nil
	}
	p.cmd, p.pid = cmd, cmd.Process.Pid
	return p, nil
}

// run starts watching the sprite tree at dir and moving req's input and
// output.
func (p *localProcess) run(dir string, req sprite.ExecRequest) {
	if lim := p.limits.DiskBytes; lim > 0 {
		go p.watchDisk(dir, lim)
	} else {
		close(p.watchDone)
	}
	p.io.Add(2)
	go copyOut(&p.io, p.outR, req.Stdout)
	go copyOut(&p.io, p.errR, req.Stderr)
	if p.stdinW == nil {
		return
	}
	if req.Stdin == nil {
		p.stdinW.Close() // immediate EOF
		return
	}
	p.feed.Add(1)
	go func() {
		defer p.feed.Done()
		io.Copy(p.stdinW, req.Stdin)
		p.stdinW.Close()
	}()
}

// prlimitArgs is the prlimit command setting the non-zero limits, nil
// when there is none to set or no prlimit.
func (b *Backend) prlimitArgs() []string {
	if b.prlimit == "" {
		return nil
	}
	var args []string
	for _, l := range []struct {
		flag string
		v    uint64
	}{{"--nproc=", b.limits.Processes}, {"--fsize=", b.limits.FileSizeBytes}, {"--cpu=", b.limits.CPUSeconds}, {"--data=", b.limits.MemoryBytes}} {
		if l.v > 0 {
			args = append(args, l.flag+strconv.FormatUint(l.v, 10))
		}
	}
	if args == nil {
		return nil
	}
	return append([]string{b.prlimit}, args...)
}

// copyOut reads one output pipe in chunks of at most 32 KiB until every
// writer has closed it.
func copyOut(wg *sync.WaitGroup, r *os.File, w io.Writer) {
	defer wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			w.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func lookPathIn(name, pathList string) string {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// localProcess is a command started by the local backend; pid is also its
// process group id.
type localProcess struct {
	cmd    *exec.Cmd
	pid    int
	stdinW *os.File
	outR   *os.File
	errR   *os.File
	io     sync.WaitGroup // the output readers
	feed   sync.WaitGroup // the stdin writer
	drain  time.Duration
	proxy  *serving // the command's egress proxy (bwrap mode)
	// release lets go of the sprite's writable root once the command has
	// ended (bwrap mode with a writable root; else nil).
	release func()
	group   *cgroup // the command's cgroup, nil without
	limits  Limits

	watchDone chan struct{} // the disk watcher has stopped
	stopWatch atomic.Bool
	diskHit   atomic.Bool

	mu     sync.Mutex
	reaped bool
}

func (p *localProcess) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil // the group id may belong to someone else now
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func (p *localProcess) Wait() (sprite.ExitStatus, error) {
	// Wait for the exit without reaping: while the leader is a zombie its
	// pid, and so the group id, cannot be recycled, so the kill below only
	// reaches what the command left running (`sleep 1000 &`).
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	p.stopWatch.Store(true)
	<-p.watchDone
	p.mu.Lock()
	syscall.Kill(-p.pid, syscall.SIGKILL)
	p.reaped = true
	p.mu.Unlock()
	oom := false
	if p.group != nil {
		oom = p.group.oomKilled()
		p.group.remove()
	}
	werr := p.cmd.Wait()
	if p.stdinW != nil {
		p.stdinW.Close() // unblocks a writer the command never read
	}
	p.feed.Wait()
	drained := make(chan struct{})
	go func() { p.io.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(p.drain):
		// Something outside the group (it made its own session) still
		// holds the pipes: stop reading rather than hang the turn.
		p.outR.Close()
		p.errR.Close()
		<-drained
	}
	p.outR.Close()
	p.errR.Close()
	if p.proxy != nil {
		p.proxy.close()
	}
	if p.release != nil {
		p.release()
	}
	var exitErr *exec.ExitError
	if werr != nil && !errors.As(werr, &exitErr) {
		return sprite.ExitStatus{}, werr
	}
	var st sprite.ExitStatus
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case !ok:
		st.Code = p.cmd.ProcessState.ExitCode()
	case ws.Signaled():
		st.Code = 128 + int(ws.Signal())
	default:
		st.Code = ws.ExitStatus()
	}
	switch {
	case p.diskHit.Load():
		st.Limit = fmt.Sprintf("sprite disk limit exceeded: its files took more than %s (--sprite-disk-limit); the command was killed", humanBytes(p.limits.DiskBytes))
	case oom:
		st.Limit = fmt.Sprintf("sprite memory limit exceeded: a process was killed for using more than %s (--sprite-memory-limit)", humanBytes(p.limits.MemoryBytes))
	}
	return st, nil
}

// diskCheckEvery is how often a running command's sprite tree is measured.
const diskCheckEvery = time.Second

// watchDisk kills the command once the sprite's files pass limit. A big
// tree (node_modules) is measured less often: the pause is at least ten
// times the last walk, so watching costs at most a tenth of a core.
func (p *localProcess) watchDisk(dir string, limit uint64) {
	defer close(p.watchDone)
	for !p.stopWatch.Load() {
		start := time.Now()
		if _, over, _ := treeUsage(dir, int64(limit)); over {
			p.diskHit.Store(true)
			p.Signal(syscall.SIGKILL)
			return
		}
		pause := max(diskCheckEvery, 10*time.Since(start))
		for end := time.Now().Add(pause); time.Now().Before(end) && !p.stopWatch.Load(); {
			time.Sleep(diskCheckEvery / 10)
		}
	}
}

// humanBytes writes a size the way the flags take it.
func humanBytes(n uint64) string {
	for _, u := range []struct {
		unit string
		size uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatUint(n/u.size, 10) + u.unit
		}
	}
	return strconv.FormatUint(n, 10) + " bytes"
}
