package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// An environment's packages are installed once, into a package layer that
// later sprites of that environment version have below their own upper
// layer (read-only, idmapped like the host's directories), so they start
// with the packages in place. A layer is what a build sprite wrote to its
// /usr, /etc, /opt and /var: its upper layers, moved to
// <data dir>/layers/<key>/ with the build sprite's ids shifted back to the
// host's (its root's files owned by 0), so any sprite's idmapped view shows
// them as its own. A sprite records the layer it is made over in
// <sprite>/layer, which keeps the layer from being collected.
//
// The runner decides when to build (once per key, single-flight); this
// file only saves, finds and removes layers.

// layerKey is what a layer may be named: the runner's key of an
// environment version and its packages.
var layerKey = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,199}$`)

func validLayerKey(key string) bool { return layerKey.MatchString(key) }

// layerUsed is the file whose modification time is a layer's last use.
const layerUsed = ".used"

// LayersDir is where the package layers of the data dir live.
func LayersDir(dataDir string) string { return filepath.Join(dataDir, "layers") }

// Layers reports whether this backend's sprites can have package layers
// (they need a writable root).
func (b *Backend) Layers() bool { return b.rootfs != nil }

// HasLayer reports whether layer key exists, and marks it used.
func (b *Backend) HasLayer(key string) bool {
	if b.rootfs == nil || !validLayerKey(key) {
		return false
	}
	dir := filepath.Join(b.rootfs.layers, key)
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return false
	}
	now := time.Now()
	os.Chtimes(filepath.Join(dir, layerUsed), now, now)
	return true
}

// SaveLayer makes what sprite name (a build sprite, none of whose commands
// still runs) wrote to its system directories into layer key, then deletes
// the sprite. An existing layer of that key is kept (another build
// finished first).
func (b *Backend) SaveLayer(ctx context.Context, name, key string) error {
	if b.rootfs == nil || !validLayerKey(key) {
		return fmt.Errorf("package layer %q: not available here", key)
	}
	dir, err := b.spriteDir(name)
	if err != nil {
		return err
	}
	defer b.Delete(ctx, name)
	uid, err := b.ids.owner(name, filepath.Join(dir, "home"))
	if err != nil {
		return err
	}
	if err := unmountBeneath(dir); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(b.rootfs.layers, ".new-")
	if err != nil {
		return err
	}
	defer removeTree(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, d := range b.rootfs.dirs {
		err := os.Rename(filepath.Join(dir, "upper", d), filepath.Join(tmp, d))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	shiftIDs(tmp, uid)
	if err := os.WriteFile(filepath.Join(tmp, layerUsed), nil, 0o600); err != nil {
		return err
	}
	unlock, err := lockLayers(b.rootfs.layers, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	err = os.Rename(tmp, filepath.Join(b.rootfs.layers, key))
	if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
		return nil
	}
	return err
}

// shiftIDs gives what the sprite whose range starts at uid owns in the
// tree at dir (links included, never followed) to the same ids counted
// from 0; the rest (overlayfs's whiteouts, made by the server) is left.
func shiftIDs(dir string, uid int) {
	shift := func(st *unix.Stat_t) (int, int, bool) {
		u, g := int(st.Uid), int(st.Gid)
		in := func(id int) bool { return id >= uid && id < uid+uidRange }
		if !in(u) && !in(g) {
			return 0, 0, false
		}
		if in(u) {
			u -= uid
		}
		if in(g) {
			g -= uid
		}
		return u, g, true
	}
	walkTree(dir, treeVisit{
		file: func(dirfd int, name string, st *unix.Stat_t) {
			if u, g, ok := shift(st); ok {
				mode := st.Mode & 0o7777
				unix.Fchownat(dirfd, name, u, g, unix.AT_SYMLINK_NOFOLLOW)
				if st.Mode&unix.S_IFMT == unix.S_IFREG && mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
					// chown clears set-id bits; a package's set-id program keeps them.
					unix.Fchmodat(dirfd, name, mode, 0)
				}
			}
		},
		dir: func(fd int, st *unix.Stat_t) {
			if u, g, ok := shift(st); ok {
				mode := st.Mode & 0o7777
				unix.Fchown(fd, u, g)
				unix.Fchmod(fd, mode)
			}
		},
	})
}

// lockLayers takes the layers directory's lock: shared while a layer is
// added or mounted, exclusive while layers are collected.
func lockLayers(layers string, how int) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(layers, ".lock"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Layer is a package layer as CollectLayers and ListLayers see it.
type Layer struct {
	Key      string
	LastUsed time.Time
	InUse    bool  // some sprite of the data dir is made over it
	Removed  bool  // (CollectLayers) it was removed
	Bytes    int64 // (ListLayers) the disk space it takes
}

// CollectLayers removes the package layers of the data dir that no sprite
// is made over and that were last used more than olderThan ago, and
// reports every layer. It serves the server's periodic collection and
// `aod environments gc` alike (the lock keeps a layer being mounted or
// saved meanwhile from going).
func CollectLayers(dataDir string, olderThan time.Duration) ([]Layer, error) {
	return scanLayers(dataDir, "", olderThan)
}

// ListLayers reports the package layers whose keys start with prefix, with
// the space each takes, and removes nothing.
func ListLayers(dataDir, prefix string) ([]Layer, error) {
	return scanLayers(dataDir, prefix, -1)
}

// scanLayers reports the layers whose keys start with prefix; with
// olderThan ≥ 0 it removes those unused for that long (and unfinished
// saves), otherwise it measures them.
func scanLayers(dataDir, prefix string, olderThan time.Duration) ([]Layer, error) {
	layers := LayersDir(dataDir)
	if _, err := os.Stat(layers); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	collect := olderThan >= 0
	how := unix.LOCK_SH
	if collect {
		how = unix.LOCK_EX
	}
	unlock, err := lockLayers(layers, how)
	if err != nil {
		return nil, err
	}
	defer unlock()
	inUse := map[string]bool{}
	sprites, _ := os.ReadDir(filepath.Join(dataDir, "sprites"))
	for _, e := range sprites {
		if key, err := os.ReadFile(filepath.Join(dataDir, "sprites", e.Name(), "layer")); err == nil && len(key) > 0 {
			inUse[string(key)] = true
		}
	}
	entries, err := os.ReadDir(layers)
	if err != nil {
		return nil, err
	}
	var out []Layer
	for _, e := range entries {
		name := e.Name()
		if collect && strings.HasPrefix(name, ".new-") {
			removeTree(filepath.Join(layers, name)) // a save that never finished
			continue
		}
		if !e.IsDir() || !validLayerKey(name) || !strings.HasPrefix(name, prefix) {
			continue
		}
		l := Layer{Key: name, InUse: inUse[name]}
		if fi, err := os.Stat(filepath.Join(layers, name, layerUsed)); err == nil {
			l.LastUsed = fi.ModTime()
		}
		switch {
		case !collect:
			l.Bytes, _, _ = treeUsage(filepath.Join(layers, name), 0)
		case !l.InUse && time.Since(l.LastUsed) >= olderThan:
			if err := removeTree(filepath.Join(layers, name)); err != nil {
				return out, fmt.Errorf("remove layer %s: %w", name, err)
			}
			l.Removed = true
		}
		out = append(out, l)
	}
	return out, nil
}

// buildPrefix names the sprites that build layers.
const buildPrefix = ".build-"

// BuildSpriteName is the name of the sprite that builds layer key (its
// tree is swept at start like a warm sprite's, never listed).
func BuildSpriteName(key string) string {
	return buildPrefix + key + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}
