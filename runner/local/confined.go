package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Everything the server does to a sprite's files from the host goes through
// these: the tree belongs to whatever runs in the sprite, which may have
// planted a symlink (or a FIFO, or a hard link) where the server is about to
// write a skill or a CLI's config. Each path is walked one component at a
// time from the tree's own directory with O_NOFOLLOW, so no link, and no
// "..", can lead the server out of the tree.

// maxConfinedRead bounds a read of a sprite file: the server reads only
// config files it merges into, never a sprite's data.
const maxConfinedRead = 16 << 20

// errLink is why a confined walk refused a path.
var errLink = errors.New("a symlink or special file is in the way (the server never follows links out of a sprite)")

// openDirNoFollow opens a directory without following a symlink at its last
// component.
func openDirNoFollow(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, errLink
	}
	return fd, err
}

// walkBeneath opens the directory rel names under base (a directory the
// server made, outside the sprite's reach), creating missing directories
// with mode 0700, owned by owner unless it is -1, when create is set. It
// returns the directory's fd.
func walkBeneath(base, rel string, create bool, owner int) (int, error) {
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", base, err)
	}
	for _, name := range strings.Split(filepath.ToSlash(rel), "/") {
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: %w", rel, errLink)
		}
		next, err := openDirNoFollow(fd, name)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(fd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, err
			}
			next, err = openDirNoFollow(fd, name)
			if err == nil && owner >= 0 {
				err = unix.Fchown(next, owner, owner)
			}
		}
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, errLink) {
				return -1, fmt.Errorf("%s: %w", rel, errLink)
			}
			return -1, &fs.PathError{Op: "open", Path: rel, Err: err}
		}
		fd = next
	}
	return fd, nil
}

// openBeneath opens the file rel names under base, refusing symlinks on
// the way and at the end, and anything but a regular file with one link
// (a hard link could be a host file's other name). What it creates belongs
// to owner unless it is -1.
func openBeneath(base, rel string, flags int, mode fs.FileMode, create bool, owner int) (*os.File, error) {
	dir, name := filepath.Split(filepath.Clean(rel))
	if name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("%s: not a file path", rel)
	}
	dirfd, err := walkBeneath(base, dir, create, owner)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	// O_NONBLOCK: a FIFO planted where a config file should be must not
	// hang the server; it is refused below.
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, uint32(mode.Perm()))
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s: %w", rel, errLink)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink > 1 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", rel, errLink)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if create && owner >= 0 {
		if err := unix.Fchown(fd, owner, owner); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	return os.NewFile(uintptr(fd), filepath.Join(base, rel)), nil
}

// readBeneath reads a regular file under base, at most maxConfinedRead bytes.
func readBeneath(base, rel string) ([]byte, error) {
	f, err := openBeneath(base, rel, unix.O_RDONLY, 0, false, -1)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfinedRead+1))
	if err == nil && len(data) > maxConfinedRead {
		err = fmt.Errorf("%s: larger than %d bytes", rel, maxConfinedRead)
	}
	return data, err
}

// writeBeneath writes a regular file under base with mode, creating its
// directories; the mode and owner (unless -1) are set on the open file,
// never through a path.
func writeBeneath(base, rel string, data []byte, mode fs.FileMode, owner int) error {
	f, err := openBeneath(base, rel, unix.O_WRONLY|unix.O_CREAT, mode, true, owner)
	if err != nil {
		return err
	}
	// Truncate only once the file is known to be the sprite's own.
	err = f.Truncate(0)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// chmodDirsBeneath makes every directory of the tree at dir writable by its
// owner so a removal can finish (tools leave read-only trees, e.g. Go's
// module cache), at any depth. Each change is made through a directory fd
// opened without following links, so a link swapped in mid-walk leads
// nowhere outside the tree.
func chmodDirsBeneath(dir string) {
	walkTree(dir, treeVisit{unlock: true, dir: func(fd int, _ *unix.Stat_t) { unix.Fchmod(fd, 0o700) }})
}

// chownTree gives everything in the tree at dir, links included (never
// followed), to uid.
func chownTree(dir string, uid int) {
	walkTree(dir, treeVisit{
		file: func(dirfd int, name string, _ *unix.Stat_t) {
			unix.Fchownat(dirfd, name, uid, uid, unix.AT_SYMLINK_NOFOLLOW)
		},
		dir: func(fd int, _ *unix.Stat_t) { unix.Fchown(fd, uid, uid) },
	})
}
