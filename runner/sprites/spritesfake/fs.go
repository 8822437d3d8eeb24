package spritesfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The filesystem API of §6.3. Every path is a path of the sprite's
// machine: it is cleaned against "/" (so ".." stops at the sprite's root)
// and resolved with openat2's RESOLVE_IN_ROOT, which treats the sprite's
// directory as "/" for every step, symlinks included: an absolute link to
// /etc means the sprite's /etc, and no link or ".." leads out to the host.
// Operations on the last component (list, delete, rename, the walks of
// recursive operations) never follow a link there.
//
// The fs API sees the whole sprite directory, but commands see only its
// home, workspace and tmp (the rest of their "/" is the host's system
// directories, read-only): a file written at /etc/x through this API is
// not visible to a command.
//
// Errors are {"error": message, "code": "ENOENT"|..., "path"} with the
// status: ENOENT 404, EEXIST 409, EACCES and EPERM 403, EIO 500, others
// 400 (the spec gives the codes, not the statuses). Successful writes
// answer 200 {"path", "size"}; delete, chmod and rename answer 204.

// mountPoints are the sprite directories bound into a command's view; the
// fs API refuses to delete or rename them, as a machine refuses to remove
// a mount point.
var mountPoints = []string{"home", "workspace", "tmp"}

// fsError is an errno-style error for one sprite path.
type fsError struct {
	code string
	path string
	err  error
}

func (e *fsError) Error() string { return fmt.Sprintf("%s: %v", e.path, e.err) }

func errnoCode(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return "EIO"
	}
	switch errno {
	case unix.ENOENT:
		return "ENOENT"
	case unix.EEXIST:
		return "EEXIST"
	case unix.ENOTDIR:
		return "ENOTDIR"
	case unix.EISDIR:
		return "EISDIR"
	case unix.EACCES, unix.EXDEV:
		return "EACCES"
	case unix.EPERM, unix.EROFS, unix.EBUSY:
		return "EPERM"
	case unix.ENOTEMPTY:
		return "ENOTEMPTY"
	case unix.EINVAL, unix.ELOOP, unix.ENAMETOOLONG, unix.ENXIO:
		return "EINVAL"
	}
	return "EIO"
}

func (f *Fake) fsFail(w http.ResponseWriter, p string, err error) {
	var fe *fsError
	code := ""
	if errors.As(err, &fe) {
		code, err = fe.code, fe.err
		if fe.path != "" {
			p = fe.path
		}
	}
	if code == "" {
		code = errnoCode(err)
	}
	status := http.StatusBadRequest
	switch code {
	case "ENOENT":
		status = http.StatusNotFound
	case "EEXIST":
		status = http.StatusConflict
	case "EACCES", "EPERM":
		status = http.StatusForbidden
	case "EIO":
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, map[string]any{"error": fmt.Sprintf("%s: %v", p, err), "code": code, "path": p})
}

// spritePath makes p (relative to wd when not absolute; wd defaults to
// "/") an absolute, clean sprite path and the same path relative to the
// sprite's root ("." for the root itself).
func spritePath(p, wd string) (abs, rel string, err error) {
	if p == "" {
		return "", "", &fsError{code: "EINVAL", path: p, err: errors.New("path is required")}
	}
	if strings.IndexByte(p, 0) >= 0 || strings.IndexByte(wd, 0) >= 0 {
		return "", "", &fsError{code: "EINVAL", path: p, err: errors.New("NUL in path")}
	}
	if !path.IsAbs(p) {
		if wd == "" {
			wd = "/"
		}
		p = path.Join("/", wd, p)
	}
	abs = path.Clean("/" + p)
	rel = strings.TrimPrefix(abs, "/")
	if rel == "" {
		rel = "."
	}
	return abs, rel, nil
}

// spriteFS is one request's handle on a sprite's root.
type spriteFS struct {
	root int // O_PATH descriptor of the sprite's directory
}

func openSpriteFS(dir string) (*spriteFS, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &spriteFS{root: fd}, nil
}

func (s *spriteFS) close() { unix.Close(s.root) }

// open opens rel resolved inside the root, following links (within it).
func (s *spriteFS) open(rel string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	for range 20 {
		fd, err := unix.Openat2(s.root, rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN { // EAGAIN: a rename raced the lookup
			continue
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

// parent opens the directory holding rel and returns it with rel's last
// component ("" for the root itself).
func (s *spriteFS) parent(rel string) (int, string, error) {
	if rel == "." {
		return -1, "", nil
	}
	dir, name := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	fd, err := s.open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, name, err
}

// mkdirAll makes rel and its missing parents (0755) inside the root.
func (s *spriteFS) mkdirAll(rel string) error {
	if rel == "." {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := s.open(p, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if err != unix.ENOENT {
			return err
		}
		dfd, name, err := s.parent(p)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(dfd, name, 0o755)
		unix.Close(dfd)
		if err != nil && err != unix.EEXIST {
			return err
		}
		// A dangling link in the way leaves EEXIST here and ENOENT on
		// the next open, which is what a machine would answer too.
		fd, err = s.open(p, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	return nil
}

// withFS opens the sprite's root for one fs request.
func (f *Fake) withFS(w http.ResponseWriter, r *http.Request, op string, fn func(*spriteFS)) {
	if ok, _ := f.begin(w, op); !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	s, err := openSpriteFS(sp.dir)
	if err != nil {
		f.fsFail(w, "/", err)
		return
	}
	defer s.close()
	fn(s)
}

func (f *Fake) fsRead(w http.ResponseWriter, r *http.Request) {
	f.withFS(w, r, "fs.read", func(s *spriteFS) {
		q := r.URL.Query()
		abs, rel, err := spritePath(q.Get("path"), q.Get("workingDir"))
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		fd, err := s.open(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		file := os.NewFile(uintptr(fd), abs)
		defer file.Close()
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			f.fsFail(w, abs, err)
			return
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
		case unix.S_IFDIR:
			f.fsFail(w, abs, unix.EISDIR)
			return
		default:
			f.fsFail(w, abs, unix.EINVAL)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size, 10))
		io.Copy(w, io.LimitReader(file, st.Size))
	})
}

func parseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, &fsError{code: "EINVAL", err: fmt.Errorf("invalid mode %q", s)}
	}
	return uint32(m), nil
}

func (f *Fake) fsWrite(w http.ResponseWriter, r *http.Request) {
	f.withFS(w, r, "fs.write", func(s *spriteFS) {
		q := r.URL.Query()
		abs, rel, err := spritePath(q.Get("path"), q.Get("workingDir"))
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		mode, setMode := uint32(0o644), false
		if m := q.Get("mode"); m != "" {
			if mode, err = parseMode(m); err != nil {
				f.fsFail(w, abs, err)
				return
			}
			setMode = true
		}
		if rel == "." {
			f.fsFail(w, abs, unix.EISDIR)
			return
		}
		if q.Get("mkdirParents") == "true" {
			if err := s.mkdirAll(path.Dir(rel)); err != nil {
				f.fsFail(w, abs, err)
				return
			}
		}
		// Create it if it is new (then it gets mode, default 0644, past
		// the umask); truncate it if not (then it keeps its mode unless
		// mode was given). Links are followed, inside the sprite.
		flags := unix.O_WRONLY | unix.O_NONBLOCK | unix.O_NOCTTY
		fd, err := s.open(rel, flags|unix.O_CREAT|unix.O_EXCL, 0o600)
		created := err == nil
		if err == unix.EEXIST {
			fd, err = s.open(rel, flags, 0)
		}
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		file := os.NewFile(uintptr(fd), abs)
		defer file.Close()
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			f.fsFail(w, abs, unix.EINVAL)
			return
		}
		if err := unix.Ftruncate(fd, 0); err != nil {
			f.fsFail(w, abs, err)
			return
		}
		if created || setMode {
			if err := unix.Fchmod(fd, mode); err != nil {
				f.fsFail(w, abs, err)
				return
			}
		}
		n, err := io.Copy(file, r.Body)
		if err != nil {
			f.fsFail(w, abs, &fsError{code: "EIO", path: abs, err: err})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"path": abs, "size": n})
	})
}

// entry is one item of a listing.
type entry struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Type    string `json:"type"` // file, directory, symlink or other
	Size    int64  `json:"size"`
	Mode    string `json:"mode"` // octal permission bits, "0644"
	ModTime string `json:"modTime"`
	IsDir   bool   `json:"isDir"`
}

func makeEntry(name, p string, st *unix.Stat_t) entry {
	typ := "other"
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		typ = "file"
	case unix.S_IFDIR:
		typ = "directory"
	case unix.S_IFLNK:
		typ = "symlink"
	}
	return entry{
		Name: name, Path: p, Type: typ, Size: st.Size,
		Mode:    fmt.Sprintf("%04o", st.Mode&0o7777),
		ModTime: time.Unix(st.Mtim.Unix()).UTC().Format(time.RFC3339Nano),
		IsDir:   typ == "directory",
	}
}

// maxListEntries bounds a listing.
const maxListEntries = 100000

// listDir appends dir's entries (the directory open as fd, at sprite path
// p) matching pattern, descending into subdirectories (never links) when
// recursive.
func listDir(fd int, p, pattern string, recursive bool, out *[]entry) error {
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), p)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		if len(*out) >= maxListEntries {
			return &fsError{code: "EIO", path: p, err: errors.New("too many entries")}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // removed meanwhile
			}
			return err
		}
		child := path.Join(p, name)
		if ok, _ := filepath.Match(pattern, name); pattern == "" || ok {
			*out = append(*out, makeEntry(name, child, &st))
		}
		if recursive && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			err = listDir(cfd, child, pattern, true, out)
			unix.Close(cfd)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *Fake) fsList(w http.ResponseWriter, r *http.Request) {
	f.withFS(w, r, "fs.list", func(s *spriteFS) {
		q := r.URL.Query()
		abs, rel, err := spritePath(q.Get("path"), q.Get("workingDir"))
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		pattern := q.Get("pattern")
		if _, err := filepath.Match(pattern, ""); err != nil {
			f.fsFail(w, abs, &fsError{code: "EINVAL", path: abs, err: err})
			return
		}
		var st unix.Stat_t
		dfd, name, err := s.parent(rel)
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		if name == "" {
			dfd, name = s.root, "."
		} else {
			defer unix.Close(dfd)
		}
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			f.fsFail(w, abs, err)
			return
		}
		entries := []entry{}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// A file or a link: the listing describes it (a link is
			// never followed).
			entries = append(entries, makeEntry(path.Base(abs), abs, &st))
		} else {
			fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				f.fsFail(w, abs, err)
				return
			}
			err = listDir(fd, abs, pattern, q.Get("recursive") == "true", &entries)
			unix.Close(fd)
			if err != nil {
				f.fsFail(w, abs, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"path": abs, "entries": entries, "count": len(entries)})
	})
}

// removeAllAt removes name in dir fd and everything beneath it without
// following links.
func removeAllAt(fd int, name string) error {
	err := unix.Unlinkat(fd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	dup, err := unix.Dup(cfd)
	if err != nil {
		unix.Close(cfd)
		return err
	}
	d := os.NewFile(uintptr(dup), name)
	names, err := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if err == nil {
			err = removeAllAt(cfd, n)
		}
	}
	unix.Close(cfd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(fd, name, unix.AT_REMOVEDIR)
}

// isMountPoint reports whether rel is one of the directories bound into
// commands' view.
func isMountPoint(rel string) bool { return slices.Contains(mountPoints, rel) }

func (f *Fake) fsDelete(w http.ResponseWriter, r *http.Request) {
	f.withFS(w, r, "fs.delete", func(s *spriteFS) {
		q := r.URL.Query()
		abs, rel, err := spritePath(q.Get("path"), q.Get("workingDir"))
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		if rel == "." || isMountPoint(rel) {
			f.fsFail(w, abs, unix.EBUSY)
			return
		}
		dfd, name, err := s.parent(rel)
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		defer unix.Close(dfd)
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			f.fsFail(w, abs, err)
			return
		}
		switch {
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			err = unix.Unlinkat(dfd, name, 0)
		case q.Get("recursive") == "true":
			err = removeAllAt(dfd, name)
		default:
			err = unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR)
		}
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// chmodFD changes the mode of the file fd (an O_PATH descriptor) refers
// to, through its /proc/self/fd link: the file is the one already
// resolved, whatever happens to its path meanwhile.
func chmodFD(fd int, mode uint32) error {
	return unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), mode, 0)
}

// chmodTree changes the mode of everything beneath directory fd, skipping
// links.
func chmodTree(fd int, mode uint32) error {
	dup, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), "")
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		cfd, err := unix.Openat(fd, n, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if err = unix.Fstat(cfd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			err = chmodFD(cfd, mode)
			if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				var dfd int
				if dfd, err = unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
					err = chmodTree(dfd, mode)
					unix.Close(dfd)
				}
			}
		}
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *Fake) fsChmod(w http.ResponseWriter, r *http.Request) {
	f.withFS(w, r, "fs.chmod", func(s *spriteFS) {
		var body struct {
			Path       string `json:"path"`
			WorkingDir string `json:"workingDir"`
			Mode       string `json:"mode"`
			Recursive  bool   `json:"recursive"`
			AsRoot     bool   `json:"asRoot"` // commands run as root here anyway
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.fsFail(w, "", &fsError{code: "EINVAL", err: err})
			return
		}
		abs, rel, err := spritePath(body.Path, body.WorkingDir)
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		mode, err := parseMode(body.Mode)
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		// Like chmod(1), the path itself is followed when it is a link
		// (inside the sprite); links met in a recursive walk are not.
		fd, err := s.open(rel, unix.O_PATH, 0)
		if err != nil {
			f.fsFail(w, abs, err)
			return
		}
		defer unix.Close(fd)
		if err := chmodFD(fd, mode); err != nil {
			f.fsFail(w, abs, err)
			return
		}
		var st unix.Stat_t
		if body.Recursive && unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			dfd, err := s.open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err == nil {
				err = chmodTree(dfd, mode)
				unix.Close(dfd)
			}
			if err != nil {
				f.fsFail(w, abs, err)
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (f *Fake) fsRename(w http.ResponseWriter, r *http.Request) {
	f.withFS(w, r, "fs.rename", func(s *spriteFS) {
		var body struct {
			Source     string `json:"source"`
			Dest       string `json:"dest"`
			WorkingDir string `json:"workingDir"`
			AsRoot     bool   `json:"asRoot"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.fsFail(w, "", &fsError{code: "EINVAL", err: err})
			return
		}
		sabs, srel, err := spritePath(body.Source, body.WorkingDir)
		if err != nil {
			f.fsFail(w, sabs, err)
			return
		}
		dabs, drel, err := spritePath(body.Dest, body.WorkingDir)
		if err != nil {
			f.fsFail(w, dabs, err)
			return
		}
		for _, p := range [][2]string{{sabs, srel}, {dabs, drel}} {
			if p[1] == "." || isMountPoint(p[1]) {
				f.fsFail(w, p[0], unix.EBUSY)
				return
			}
		}
		sfd, sname, err := s.parent(srel)
		if err != nil {
			f.fsFail(w, sabs, err)
			return
		}
		defer unix.Close(sfd)
		dfd, dname, err := s.parent(drel)
		if err != nil {
			f.fsFail(w, dabs, err)
			return
		}
		defer unix.Close(dfd)
		if err := unix.Renameat(sfd, sname, dfd, dname); err != nil {
			f.fsFail(w, sabs, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
