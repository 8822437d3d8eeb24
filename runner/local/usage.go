package local

import (
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// A sprite's tree belongs to whatever runs in it, which may swap a
// directory for a symlink while the server walks it. The one walk below
// (measuring, chowning, unlocking for removal) opens every directory
// relative to its parent's fd with O_NOFOLLOW and checks it is the one it
// listed, so it never leaves the tree, never follows a link, never enters
// another filesystem mounted inside, and reaches any depth with a bounded
// number of open descriptors.

// heldDirs is how many ancestors of the directory being read keep their fd
// open; deeper down the walk goes back up through "..", checking it
// arrives where it came from, so a tree made deep on purpose cannot run
// the server out of descriptors.
const heldDirs = 128

// fileID names an inode.
type fileID struct{ dev, ino uint64 }

// treeUsage is the disk space (st_blocks*512 summed) of everything under
// dir, counting each hard-linked inode once. Unreadable entries are
// skipped, not fatal. It stops early and returns (sum, true) once sum
// exceeds stopAt (0 = never stop early), so a check of a huge tree against
// a limit is cheap.
//
// dir itself is counted, and must be a directory (not a symlink to one).
// Only an error opening it is returned. What the tree's owner changes
// during the walk may be missed or counted twice, never followed out.
func treeUsage(dir string, stopAt int64) (used int64, over bool, err error) {
	var sum int64
	links := map[fileID]struct{}{}
	add := func(st *unix.Stat_t) {
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			id := idOf(st)
			if _, ok := links[id]; ok {
				return
			}
			links[id] = struct{}{}
		}
		sum += int64(st.Blocks) * 512
	}
	isOver := func() bool { return stopAt > 0 && sum > stopAt }
	err = walkTree(dir, treeVisit{
		file: func(_ int, _ string, st *unix.Stat_t) { add(st) },
		dir:  func(_ int, st *unix.Stat_t) { add(st) },
		stop: isOver,
	})
	if err != nil {
		return 0, false, fmt.Errorf("tree usage of %s: %w", dir, err)
	}
	return sum, isOver(), nil
}

// treeVisit is what walkTree does on the way.
type treeVisit struct {
	// file is called for every entry that is not a directory, by its
	// directory's fd and its name (never followed: it may be a link).
	file func(dirfd int, name string, st *unix.Stat_t)
	// dir is called with every directory's own fd, the top one included,
	// before its entries are read.
	dir func(fd int, st *unix.Stat_t)
	// stop ends the walk early when it returns true (nil: never).
	stop func() bool
	// unlock makes a directory its owner cannot read readable (0700)
	// before entering it, through a descriptor that never follows a link.
	unlock bool
}

// walkTree walks the tree at top (a directory, not a link to one) as v
// says. Only an error opening top is returned.
func walkTree(top string, v treeVisit) error {
	fd, err := openDirAt(unix.AT_FDCWD, top)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	w := &treeWalk{treeVisit: v, dev: uint64(st.Dev), buf: make([]byte, 64<<10), dirs: map[fileID]struct{}{}}
	self := idOf(&st)
	w.dirs[self] = struct{}{}
	if w.dir != nil {
		w.dir(fd, &st)
	}
	if fd = w.walk(fd, self, 0); fd >= 0 {
		unix.Close(fd)
	}
	return nil
}

type treeWalk struct {
	treeVisit
	dev  uint64              // the tree's filesystem
	buf  []byte              // for getdents
	dirs map[fileID]struct{} // directories entered (a bind mount can loop)
}

type subdir struct {
	name string
	id   fileID
}

func (w *treeWalk) stopped() bool { return w.stop != nil && w.stop() }

func idOf(st *unix.Stat_t) fileID { return fileID{uint64(st.Dev), uint64(st.Ino)} }

// walk visits what is below the directory open at fd, whose inode is self,
// below depth held ancestors. It owns fd and hands back the directory's fd
// (perhaps reopened), or -1 when the way back up was lost.
func (w *treeWalk) walk(fd int, self fileID, depth int) int {
	names := w.readNames(fd)
	var subs []subdir
	for _, name := range names {
		if w.stopped() {
			return fd
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || uint64(st.Dev) != w.dev {
			continue // gone, or another filesystem mounted here
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			subs = append(subs, subdir{name, idOf(&st)})
			continue
		}
		if w.file != nil {
			w.file(fd, name, &st)
		}
	}
	for _, sd := range subs {
		if w.stopped() {
			return fd
		}
		if _, ok := w.dirs[sd.id]; ok {
			continue
		}
		cfd, err := openDirAt(fd, sd.name)
		if errors.Is(err, unix.EACCES) && w.unlock && unlockDir(fd, sd.name) {
			cfd, err = openDirAt(fd, sd.name)
		}
		if err != nil {
			continue // unreadable, gone, or swapped for a link
		}
		var st unix.Stat_t
		if err := unix.Fstat(cfd, &st); err != nil || idOf(&st) != sd.id {
			unix.Close(cfd) // swapped since it was listed
			continue
		}
		w.dirs[sd.id] = struct{}{}
		if w.dir != nil {
			w.dir(cfd, &st)
		}
		if depth < heldDirs {
			if cfd = w.walk(cfd, sd.id, depth+1); cfd >= 0 {
				unix.Close(cfd)
			}
			continue
		}
		unix.Close(fd)
		if cfd = w.walk(cfd, sd.id, depth+1); cfd < 0 {
			return -1
		}
		fd, err = openDirAt(cfd, "..")
		unix.Close(cfd)
		if err != nil {
			return -1
		}
		if err := unix.Fstat(fd, &st); err != nil || idOf(&st) != self {
			unix.Close(fd) // the subdirectory was moved meanwhile
			return -1
		}
	}
	return fd
}

// readNames lists the directory open at fd (what it could read of it).
func (w *treeWalk) readNames(fd int) []string {
	var names []string
	for {
		n, err := unix.Getdents(fd, w.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			return names
		}
		_, _, names = unix.ParseDirent(w.buf[:n], -1, names)
	}
}

// unlockDir makes directory name in dirfd searchable and readable by its
// owner. The mode is changed through an O_PATH descriptor of that very
// directory (by its /proc/self/fd link, which names the inode, not a
// path), so a symlink swapped in meanwhile is never followed.
func unlockDir(dirfd int, name string) bool {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), 0o700) == nil
}

// openDirAt opens directory name in dirfd, never through a symlink.
func openDirAt(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
