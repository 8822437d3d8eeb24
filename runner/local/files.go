package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aod/aod/runner/sprite"
	"golang.org/x/sys/unix"
)

// The files API's reads of a sprite: every path is walked from the tree
// part's own directory one component at a time without following links
// (see confined.go), so neither a symlink nor ".." leads out of the sprite.

// notInSprite is the error for a path outside the sprite's tree parts.
func notInSprite(p string) error {
	return &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

// split is p's directory and last name, both relative to the tree part.
func split(rel string) (dir, name string) {
	rel = strings.Trim(filepath.ToSlash(rel), "/")
	if rel == "" {
		return "", ""
	}
	i := strings.LastIndexByte(rel, '/')
	return rel[:max(i, 0)], rel[i+1:]
}

// statAt describes name in directory dirfd without following a link.
func statAt(dirfd int, name string) (sprite.FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return sprite.FileInfo{}, err
	}
	fi := infoOf(name, &st)
	if fi.Type == sprite.TypeSymlink {
		buf := make([]byte, 4096)
		if n, err := unix.Readlinkat(dirfd, name, buf); err == nil {
			fi.Target = string(buf[:n])
		}
	}
	return fi, nil
}

func infoOf(name string, st *unix.Stat_t) sprite.FileInfo {
	fi := sprite.FileInfo{Name: name, Size: st.Size, Mode: fs.FileMode(st.Mode & 0o7777).Perm(),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		fi.Type = sprite.TypeFile
	case unix.S_IFDIR:
		fi.Type = sprite.TypeDir
	case unix.S_IFLNK:
		fi.Type = sprite.TypeSymlink
	default:
		fi.Type = sprite.TypeOther
	}
	if fi.Type != sprite.TypeFile {
		fi.Size = 0
	}
	return fi
}

func (s *localSprite) Stat(ctx context.Context, p string) (sprite.FileInfo, error) {
	base, rel := s.locate(p)
	if base == "" {
		return sprite.FileInfo{}, notInSprite(p)
	}
	dir, name := split(rel)
	if name == "" { // the tree part itself
		dirfd, err := walkBeneath(base, "", false, -1)
		if err != nil {
			return sprite.FileInfo{}, err
		}
		defer unix.Close(dirfd)
		var st unix.Stat_t
		if err := unix.Fstat(dirfd, &st); err != nil {
			return sprite.FileInfo{}, err
		}
		return infoOf(path.Base(path.Clean(p)), &st), nil
	}
	dirfd, err := walkBeneath(base, dir, false, -1)
	if err != nil {
		return sprite.FileInfo{}, notFoundIfLink(p, err)
	}
	defer unix.Close(dirfd)
	fi, err := statAt(dirfd, name)
	if err != nil {
		return sprite.FileInfo{}, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return fi, nil
}

// notFoundIfLink reports a path that goes through a link (or a file) as
// missing: no directory is there to go through.
func notFoundIfLink(p string, err error) error {
	if errors.Is(err, errLink) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return notInSprite(p)
	}
	return err
}

func (s *localSprite) ReadDir(ctx context.Context, p string) ([]sprite.FileInfo, error) {
	base, rel := s.locate(p)
	if base == "" {
		return nil, notInSprite(p)
	}
	dirfd, err := walkBeneath(base, rel, false, -1)
	if err != nil {
		return nil, notFoundIfLink(p, err)
	}
	defer unix.Close(dirfd)
	names, err := readNames(dirfd)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]sprite.FileInfo, 0, len(names))
	for _, name := range names {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if fi, err := statAt(dirfd, name); err == nil {
			out = append(out, fi)
		}
	}
	return out, nil
}

// readNames lists a directory fd's entries (not "." and "..") without
// consuming the fd.
func readNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	unix.Close(fd)
	return names, nil
}

func (s *localSprite) Open(ctx context.Context, p string) (io.ReadCloser, sprite.FileInfo, error) {
	base, rel := s.locate(p)
	if base == "" {
		return nil, sprite.FileInfo{}, notInSprite(p)
	}
	if _, name := split(rel); name == "" {
		return nil, sprite.FileInfo{}, fmt.Errorf("%s is a directory", p)
	}
	f, err := openBeneath(base, rel, unix.O_RDONLY, 0, false, -1)
	if err != nil {
		return nil, sprite.FileInfo{}, notFoundIfLink(p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, sprite.FileInfo{}, err
	}
	return f, infoOf(path.Base(path.Clean(p)), &st), nil
}
