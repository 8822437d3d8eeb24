package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A sprite's writable root (aod running as root): its processes see "/" as
// a machine of their own where apt-get, pip and writes under /usr/local or
// /opt work, while the host's directories are never modified.
//
//   - "/" is the sprite's own directory (<sprite>/root, owned by its root),
//     holding the mount points and the usr-merge links.
//   - /usr, /etc and /opt are overlays mounted by the server (host root,
//     which dpkg needs: an overlay mounted inside the sprite's user
//     namespace cannot copy up host-root files nor rename directories).
//     Their lower layers are idmapped, read-only views of the server's base
//     layer and of the host's directory, in which host uid N appears as the
//     sprite's N (so host-root files are the sprite root's to copy up);
//     their upper layers are the sprite's, on disk under <sprite>/upper,
//     kept across turns and counted by the disk watcher.
//   - /var is an overlay of the base layer alone: a skeleton and a copy of
//     the host's package database, so apt knows what /usr holds, and none
//     of the host's own state.
//   - The base layer (<sprites>/.base, rebuilt at each start) masks with
//     whiteouts everything of those host directories that is not world
//     readable (an idmapped view would show /etc/shadow as the sprite
//     root's own) and the data dir, should it lie in one of them.
//
// The overlays are mounted at <sprite>/fs/<dir>, which only the server can
// reach, and bound into the sandbox by bubblewrap; they are unmounted
// before a sprite's tree is removed, and a restarted server mounts them
// again when a sprite is next used.

// overlaid are the host system directories a writable root overlays, and
// baseOnly the ones made from the base layer alone.
var (
	overlaid = []string{"usr", "etc", "opt"}
	baseOnly = []string{"var"}
)

// rootSkeleton are the directories of a sprite's "/" made when it is
// created: the mount points, and what a machine has.
var rootSkeleton = []string{"proc", "dev", "home", "home/sprite", "workspace", "tmp", "run", "root", "mnt", "srv", "aod"}

// writableRoot makes and mounts sprites' root filesystems.
type writableRoot struct {
	base    string      // <sprites>/.base
	layers  string      // <data dir>/layers: the environments' package layers (layers.go)
	dirs    []string    // the overlays, in mount order: overlaid that exist, then baseOnly
	links   [][2]string // the host's usr-merge links: name → target ("bin" → "usr/bin")
	sleep   string      // a command that waits, to hold a user namespace while its fd is taken
	unshare string      // util-linux's unshare, which starts it in one

	ready    chan struct{} // closed once the base layer is made
	readyErr error         // why it could not be

	mu     sync.Mutex
	userns map[int]int // first host uid of a range → a user namespace mapping it from 0
}

// newWritableRoot unmounts what a previous process left mounted under
// sprites, rebuilds the base layer and proves an overlay mounts.
func newWritableRoot(sprites, dataDir string) (*writableRoot, error) {
	w := &writableRoot{base: filepath.Join(sprites, ".base"), layers: filepath.Join(filepath.Dir(sprites), "layers"), userns: map[int]int{}}
	if err := os.MkdirAll(w.layers, 0o700); err != nil {
		return nil, err
	}
	if w.sleep = FindBinary("sleep"); w.sleep == "" {
		return nil, errors.New("sleep (coreutils) not found")
	}
	if w.unshare = FindBinary("unshare"); w.unshare == "" {
		return nil, errors.New("unshare (util-linux) not found")
	}
	for _, d := range overlaid {
		if fi, err := os.Lstat("/" + d); err == nil && fi.IsDir() {
			w.dirs = append(w.dirs, d)
		}
	}
	w.dirs = append(w.dirs, baseOnly...)
	for _, d := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		if target, err := os.Readlink("/" + d); err == nil {
			w.links = append(w.links, [2]string{d, target})
		}
	}
	if err := unmountBeneath(sprites); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if err := w.probe(sprites); err != nil {
		return nil, err
	}
	// The base layer takes a walk of the host's system dirs: made in the
	// background, waited for by the first sprite.
	w.ready = make(chan struct{})
	go func() {
		defer close(w.ready)
		if w.readyErr = w.buildBase(abs); w.readyErr != nil {
			w.readyErr = fmt.Errorf("base layer: %w", w.readyErr)
		}
	}()
	return w, nil
}

// probe proves an overlay over an idmapped view mounts here, on a tiny
// tree of its own.
func (w *writableRoot) probe(sprites string) error {
	dir, err := os.MkdirTemp(sprites, ".probe-root-")
	if err != nil {
		return err
	}
	defer removeTree(dir)
	for _, d := range []string{"lower", "view", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lower", "f"), nil, 0o644); err != nil {
		return err
	}
	userns, err := w.usernsFor(1 << 30)
	if err != nil {
		return err
	}
	if err := idmappedView(filepath.Join(dir, "lower"), filepath.Join(dir, "view"), userns); err != nil {
		return err
	}
	defer unix.Unmount(filepath.Join(dir, "view"), unix.MNT_DETACH)
	opts := "lowerdir=" + filepath.Join(dir, "view") + ",upperdir=" + filepath.Join(dir, "upper") + ",workdir=" + filepath.Join(dir, "work") + ",redirect_dir=on"
	if err := unix.Mount("overlay", filepath.Join(dir, "merged"), "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("overlay over an idmapped mount: %w", err)
	}
	defer unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "merged", "f"), &st); err != nil {
		return fmt.Errorf("overlay over an idmapped mount: %w", err)
	}
	return nil
}

// hostMasks are what an unprivileged user cannot read in the host's
// overlaid directories: one walk of them per process (a server makes its
// base layer at start; tests start many).
var hostMasks = sync.OnceValues(func() ([]string, error) {
	var out []string
	for _, d := range overlaid {
		if fi, err := os.Lstat("/" + d); err != nil || !fi.IsDir() {
			continue
		}
		masks, err := hiddenEntries("/"+d, "")
		if err != nil {
			return nil, err
		}
		out = append(out, masks...)
	}
	return out, nil
})

// buildBase makes the base layer anew: whiteouts over what the sprite must
// not see of the overlaid host directories, and /var's skeleton.
func (w *writableRoot) buildBase(dataDir string) error {
	tmp := w.base + ".new"
	if err := removeTree(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	for _, d := range w.dirs {
		if slices.Contains(baseOnly, d) {
			continue
		}
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return err
		}
	}
	masks, err := hostMasks()
	if err != nil {
		return err
	}
	for _, d := range w.dirs {
		if under(dataDir, "/"+d) {
			masks = append(masks, dataDir) // the data dir, should it lie there
		}
	}
	for _, m := range masks {
		if err := whiteout(tmp, m); err != nil {
			return fmt.Errorf("mask %s: %w", m, err)
		}
	}
	if err := buildVar(filepath.Join(tmp, "var")); err != nil {
		return err
	}
	if err := removeTree(w.base); err != nil {
		return err
	}
	return os.Rename(tmp, w.base)
}

// hiddenEntries lists, under host directory top, what an unprivileged
// user cannot read (a file without o+r, a directory without o+rx: nothing
// below it is walked) and dataDir if it lies there, as absolute paths.
func hiddenEntries(top, dataDir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == top {
				return err
			}
			return nil // gone meanwhile, or unreadable even to root
		}
		if p == dataDir {
			out = append(out, p)
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // its target is checked where it lies
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		perm := fi.Mode().Perm()
		switch {
		case d.IsDir() && perm&0o005 != 0o005:
			out = append(out, p)
			return filepath.SkipDir
		case !d.IsDir() && perm&0o004 == 0:
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// whiteout hides host path p in the base layer at base: overlayfs's
// whiteout (a 0/0 character device) at p, below copies of p's parent
// directories with the host's modes and owners (the topmost layer holding
// a directory gives its attributes).
func whiteout(base, p string) error {
	rel := strings.TrimPrefix(p, "/")
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/")
		var st unix.Stat_t
		if err := unix.Lstat("/"+dir, &st); err != nil {
			return err
		}
		at := filepath.Join(base, dir)
		if err := os.Mkdir(at, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Lchown(at, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Chmod(at, st.Mode&0o7777); err != nil {
			return err
		}
	}
	err := unix.Mknod(filepath.Join(base, rel), unix.S_IFCHR|0o600, 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// buildVar makes /var's layer: the directories apt, dpkg and programs
// expect, and the host's package database (hard links where it can, the
// layer is never written), so dpkg knows what the host's /usr holds.
func buildVar(dir string) error {
	for _, d := range []string{"", "lib", "lib/apt/lists/partial", "cache/apt/archives/partial", "log", "spool", "mail", "backups", "local", "opt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{"tmp", "lock"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(dir, d), 0o1777); err != nil {
			return err
		}
	}
	if err := os.Symlink("/run/lock", filepath.Join(dir, "run")); err != nil {
		return err
	}
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		return nil // not a dpkg system: nothing to copy
	}
	return copyTree("/var/lib/dpkg", filepath.Join(dir, "lib/dpkg"))
}

// copyTree copies host tree src (the server's own, trusted) to dst with
// modes and owners, hard-linking regular files where it can.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch {
		case d.IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			if os.Link(p, to) == nil {
				return nil
			}
			if err := copyFile(p, to); err != nil {
				return err
			}
		default:
			return nil // no sockets or FIFOs in a package database
		}
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		return os.Chmod(to, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// usernsFor is a user namespace mapping 0..uidRange-1 to the host ids from
// uid on: what the idmapped views of the layers are seen through.
func (w *writableRoot) usernsFor(uid int) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fd, ok := w.userns[uid]; ok {
		return fd, nil
	}
	fd, err := w.newUserns(uid)
	if err != nil {
		return -1, fmt.Errorf("user namespace for uid %d: %w", uid, err)
	}
	w.userns[uid] = fd
	return fd, nil
}

// newUserns makes the user namespace usernsFor keeps. Its process is
// started by unshare(1), not with the namespace as a clone flag: Go forks a
// process whose maps its parent must write with a full fork, which stalls
// every thread of a big server for the copy of its page tables (a new
// sprite's first command waited ~15 ms for it); a plain exec is a vfork.
// The maps are written here, as the child's parent namespace's root.
func (w *writableRoot) newUserns(uid int) (int, error) {
	cmd := exec.Command(w.unshare, "--user", "--", w.sleep, "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return -1, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	proc := "/proc/" + strconv.Itoa(cmd.Process.Pid)
	var self, child unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &self); err != nil {
		return -1, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := unix.Stat(proc+"/ns/user", &child); err != nil {
			return -1, err
		}
		if child.Ino != self.Ino {
			break // unshare(2) has run
		}
		if time.Now().After(deadline) {
			return -1, errors.New("unshare --user did not make a user namespace")
		}
		time.Sleep(100 * time.Microsecond)
	}
	mapping := fmt.Sprintf("0 %d %d\n", uid, uidRange)
	for _, f := range []string{"uid_map", "gid_map"} {
		if err := os.WriteFile(proc+"/"+f, []byte(mapping), 0); err != nil {
			return -1, err
		}
	}
	return unix.Open(proc+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// prepare makes the "/" directory of the sprite whose tree is dir and
// whose range starts at host uid uid, and records its package layer
// ("" for none), which must exist, in dir/layer (which keeps it from
// being collected).
func (w *writableRoot) prepare(dir string, uid int, layer string) error {
	<-w.ready
	if w.readyErr != nil {
		return w.readyErr
	}
	root := filepath.Join(dir, "root")
	if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
		// A new sprite's "/": after this it is the sprite's to change
		// (each command's mount points are made safe by secure).
		if err := mkdirOwned(root, 0o755, uid); err != nil {
			return err
		}
		for _, d := range rootSkeleton {
			if err := writeDirBeneath(root, d, uid); err != nil {
				return fmt.Errorf("root skeleton %s: %w", d, err)
			}
		}
		if err := w.makeLinks(root, uid); err != nil {
			return err
		}
	}
	marker := filepath.Join(dir, "layer")
	if had, err := os.ReadFile(marker); err == nil && string(had) == layer {
		return nil
	}
	if layer != "" {
		// Not collected between here and the marker that keeps it.
		unlock, err := lockLayers(w.layers, unix.LOCK_SH)
		if err != nil {
			return err
		}
		defer unlock()
		if _, err := os.Stat(filepath.Join(w.layers, layer)); err != nil {
			return fmt.Errorf("package layer %s: %w", layer, err)
		}
	}
	return os.WriteFile(marker, []byte(layer), 0o600)
}

// mount mounts the writable root of the sprite whose tree is dir (see
// prepare) on the host: an overlay for each of w.dirs at dir/fs/<d>, over
// its package layer; one mounted already is left as it is.
func (w *writableRoot) mount(dir string, uid int, layer string) error {
	<-w.ready
	if w.readyErr != nil {
		return w.readyErr
	}
	userns := -1
	for _, d := range w.dirs {
		at := filepath.Join(dir, "fs", d)
		if err := os.MkdirAll(at, 0o755); err != nil {
			return err
		}
		if mounted, err := isMountPoint(at); err != nil || mounted {
			if err != nil {
				return err
			}
			continue
		}
		if userns < 0 {
			var err error
			if userns, err = w.usernsFor(uid); err != nil {
				return err
			}
		}
		if err := w.mountOne(dir, d, uid, userns, layer); err != nil {
			return fmt.Errorf("overlay for /%s: %w", d, err)
		}
	}
	return nil
}

// mountOne mounts dir/fs/d: idmapped views of the layers attached at
// dir/lower/d-N for as long as the overlay's mount takes (it keeps its
// own references), the sprite's upper layer dir/upper/d.
func (w *writableRoot) mountOne(dir, d string, uid, userns int, layer string) error {
	upper, work := filepath.Join(dir, "upper", d), filepath.Join(dir, "work", d)
	// The upper directory gives the overlay's top its attributes.
	mode := fs.FileMode(0o755)
	if host, err := os.Stat("/" + d); err == nil && !slices.Contains(baseOnly, d) {
		mode = host.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(upper), 0o700); err != nil {
		return err
	}
	if err := mkdirOwned(upper, mode, uid); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	var layers []string
	if layer != "" {
		if fi, err := os.Lstat(filepath.Join(w.layers, layer, d)); err == nil && fi.IsDir() {
			layers = append(layers, filepath.Join(w.layers, layer, d))
		}
	}
	layers = append(layers, filepath.Join(w.base, d))
	if !slices.Contains(baseOnly, d) {
		layers = append(layers, "/"+d)
	}
	var lowers []string
	defer func() {
		for _, l := range lowers {
			unix.Unmount(l, unix.MNT_DETACH)
		}
	}()
	for i, src := range layers {
		at := filepath.Join(dir, "lower", d+"-"+strconv.Itoa(i))
		if err := os.MkdirAll(at, 0o700); err != nil {
			return err
		}
		if err := idmappedView(src, at, userns); err != nil {
			return err
		}
		lowers = append(lowers, at)
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work + ",redirect_dir=on"
	return unix.Mount("overlay", filepath.Join(dir, "fs", d), "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts)
}

// idmappedView attaches at dst a read-only view of host directory src in
// which the ids are seen through user namespace userns.
func idmappedView(src, dst string, userns int) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmap %s: %w", src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s: %w", src, err)
	}
	return nil
}

// bwrapArgs put the writable root of the sprite whose tree is dir in
// place: its "/" and the overlays.
func (w *writableRoot) bwrapArgs(dir string) []string {
	args := []string{"--bind", filepath.Join(dir, "root"), "/"}
	for _, d := range w.dirs {
		args = append(args, "--bind", filepath.Join(dir, "fs", d), "/"+d)
	}
	return args
}

// mkdirOwned makes directory p (the server's path, not beneath a sprite's
// reach) with mode, owned by uid.
func mkdirOwned(p string, mode fs.FileMode, uid int) error {
	if err := os.Mkdir(p, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Lchown(p, uid, uid); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// writeDirBeneath makes directory rel beneath base (0755, owned by uid)
// without following any link on the way.
func writeDirBeneath(base, rel string, uid int) error {
	fd, err := walkBeneath(base, rel, true, uid)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, 0o755)
}

// makeLinks makes the host's usr-merge links in a sprite's "/" (where the
// sprite has not put something else).
func (w *writableRoot) makeLinks(root string, uid int) error {
	fd, err := openDirAt(unix.AT_FDCWD, root)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, l := range w.links {
		if err := unix.Symlinkat(l[1], fd, l[0]); err != nil {
			if errors.Is(err, unix.EEXIST) {
				continue
			}
			return err
		}
		if err := unix.Fchownat(fd, l[0], uid, uid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// isMountPoint reports whether p is the root of a mount.
func isMountPoint(p string) (bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false, err
	}
	return stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// unmountBeneath detaches every mount at or below dir, deepest first.
func unmountBeneath(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if p := unescapeMountinfo(fields[4]); under(p, dir) {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// secure makes every place bubblewrap will mount on (the destinations in
// args) safe before it runs: bwrap creates missing mount points as host
// root and follows links on the way, and a writable root is the sprite's
// to change, so a link it planted at /aod or /srv would have bwrap create
// directories and files anywhere on the host. Each destination is walked
// without following links from the server's side of the tree (the
// sprite's "/" directory, or the overlay the destination lies in); a link
// or file where a directory must be is removed, a directory where a
// file's mount point must be is moved aside, and what is missing is made,
// owned by the sprite's root. A sprite runs no process between its
// commands, so nothing can plant another link before bwrap starts.
func (w *writableRoot) secure(dir string, uid int, args []string) error {
	for i := 0; i < len(args); i++ {
		var dst string
		file := false
		switch args[i] {
		case "--":
			return nil
		case "--bind", "--ro-bind", "--dev-bind":
			if i+2 >= len(args) {
				return fmt.Errorf("%s: missing arguments", args[i])
			}
			fi, err := os.Stat(args[i+1])
			if err != nil {
				return err
			}
			dst, file = args[i+2], !fi.IsDir()
			i += 2
		case "--dir", "--tmpfs", "--proc", "--dev", "--mqueue":
			dst = args[i+1]
			i++
		case "--symlink":
			i += 2
			continue
		case "--perms", "--size", "--chdir", "--remount-ro", "--uid", "--gid", "--hostname":
			i++
			continue
		default:
			continue
		}
		base, rel := w.serverSide(dir, dst)
		if base == "" || rel == "" {
			continue // "/" itself, or inside a mount bwrap makes afresh
		}
		if err := ensureBeneath(base, rel, file, uid); err != nil {
			return fmt.Errorf("mount point %s: %w", dst, err)
		}
	}
	return nil
}

// serverSide is where sprite path p lies on the server's side: beneath
// the overlay of the system dir holding it, else beneath the sprite's "/"
// directory; "" for a path inside /proc or /dev (fresh mounts of bwrap's).
func (w *writableRoot) serverSide(dir, p string) (base, rel string) {
	if under(p, "/proc") || under(p, "/dev") {
		return "", ""
	}
	for _, d := range w.dirs {
		if under(p, "/"+d) {
			return filepath.Join(dir, "fs", d), strings.TrimPrefix(strings.TrimPrefix(p, "/"+d), "/")
		}
	}
	return filepath.Join(dir, "root"), strings.TrimPrefix(p, "/")
}

// ensureBeneath makes rel beneath base a directory (or, with file, an
// empty regular file unless one is there), owned by uid where it makes
// it, never following a link.
func ensureBeneath(base, rel string, file bool, uid int) error {
	fd, err := openDirAt(unix.AT_FDCWD, base)
	if err != nil {
		return err
	}
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		if name == "" || name == "." || name == ".." {
			unix.Close(fd)
			return fmt.Errorf("%q: not a clean path", rel)
		}
		if file && i == len(parts)-1 {
			err := ensureFileAt(fd, name, uid)
			unix.Close(fd)
			return err
		}
		next, err := openDirAt(fd, name)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// A link, or a file, where a directory must be.
			if err = unix.Unlinkat(fd, name, 0); err == nil {
				err = unix.ENOENT
			}
		}
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(fd, name, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				if err = unix.Fchownat(fd, name, uid, uid, unix.AT_SYMLINK_NOFOLLOW); err == nil {
					next, err = openDirAt(fd, name)
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
		fd = next
	}
	unix.Close(fd)
	return nil
}

// ensureFileAt leaves a regular file name in dirfd as it is, and puts an
// empty one in place of anything else.
func ensureFileAt(dirfd int, name string, uid int) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG:
		return nil
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if err := unix.Renameat(dirfd, name, dirfd, name+".moved-by-aod"); err != nil {
			return err
		}
	case err == nil:
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return err
		}
	case !errors.Is(err, unix.ENOENT):
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchown(fd, uid, uid)
}
