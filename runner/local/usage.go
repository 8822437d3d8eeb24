package local

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A sprite's tree belongs to whatever runs in it, which may swap a
// directory for a symlink while the server measures it. The walk below
// opens every directory relative to its parent's fd with O_NOFOLLOW and
// checks it is the one it listed, so it never leaves the tree, never
// follows a link, and never counts another filesystem mounted inside.

// heldDirs is how many ancestors of the directory being read keep their fd
// open; deeper down the walk goes back up through "..", checking it
// arrives where it came from, so a tree made deep on purpose cannot run
// the server out of descriptors.
const heldDirs = 128

// fileID names an inode.
type fileID struct{ dev, ino uint64 }

// treeUsage is the disk space (st_blocks*512 summed) of everything under dir, walking without following symlinks and without crossing into another filesystem (skip mount points that differ in st_dev), counting each hard-linked inode once. Unreadable entries are skipped, not fatal. It stops early and returns (sum, true) once sum exceeds stopAt (0 = never stop early), so a check of a huge tree against a limit is cheap.
//
// dir itself is counted, and must be a directory (not a symlink to one).
// Only an error opening it is returned. What the tree's owner changes
// during the walk may be missed or counted twice, never followed out.
func treeUsage(dir string, stopAt int64) (used int64, over bool, err error) {
	fd, err := openDirAt(unix.AT_FDCWD, dir)
	if err != nil {
		return 0, false, fmt.Errorf("tree usage of %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return 0, false, fmt.Errorf("tree usage of %s: %w", dir, err)
	}
	w := &usageWalk{
		dev:    uint64(st.Dev),
		stopAt: stopAt,
		buf:    make([]byte, 64<<10),
		links:  map[fileID]struct{}{},
		dirs:   map[fileID]struct{}{},
	}
	self := idOf(&st)
	w.dirs[self] = struct{}{}
	w.add(&st)
	if fd = w.walk(fd, self, 0); fd >= 0 {
		unix.Close(fd)
	}
	return w.sum, w.over(), nil
}

type usageWalk struct {
	dev    uint64 // the tree's filesystem
	stopAt int64
	sum    int64
	buf    []byte              // for getdents
	links  map[fileID]struct{} // inodes with more than one link, counted already
	dirs   map[fileID]struct{} // directories entered (a bind mount can loop)
}

type subdir struct {
	name string
	id   fileID
}

func (w *usageWalk) over() bool { return w.stopAt > 0 && w.sum > w.stopAt }

func (w *usageWalk) add(st *unix.Stat_t) {
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		id := idOf(st)
		if _, ok := w.links[id]; ok {
			return
		}
		w.links[id] = struct{}{}
	}
	w.sum += int64(st.Blocks) * 512
}

func idOf(st *unix.Stat_t) fileID { return fileID{uint64(st.Dev), uint64(st.Ino)} }

// walk adds up the directory open at fd, whose inode is self, below depth
// held ancestors. It owns fd and hands back the directory's fd (perhaps
// reopened), or -1 when the way back up was lost.
func (w *usageWalk) walk(fd int, self fileID, depth int) int {
	names := w.readNames(fd)
	var subs []subdir
	for _, name := range names {
		if w.over() {
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
		w.add(&st)
	}
	for _, sd := range subs {
		if w.over() {
			return fd
		}
		if _, ok := w.dirs[sd.id]; ok {
			continue
		}
		cfd, err := openDirAt(fd, sd.name)
		if err != nil {
			continue // unreadable, gone, or swapped for a link
		}
		var st unix.Stat_t
		if err := unix.Fstat(cfd, &st); err != nil || idOf(&st) != sd.id {
			unix.Close(cfd) // swapped since it was listed
			continue
		}
		w.dirs[sd.id] = struct{}{}
		w.add(&st)
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
func (w *usageWalk) readNames(fd int) []string {
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

// openDirAt opens directory name in dirfd, never through a symlink.
func openDirAt(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
