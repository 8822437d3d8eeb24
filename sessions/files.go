package sessions

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// The files API reads a session's sprite while it exists: paths are sprite
// paths (the home directory, the workspace, /tmp, repository mounts), and
// no link is followed (see sprite.Sprite's Stat, ReadDir and Open). The
// API and the web UI serve them alike through these.

// DefaultMaxDownload is the largest file a download serves when the server
// is given no limit.
const DefaultMaxDownload = 256 << 20

// File is one entry of a sprite directory as the API shows it.
type File struct {
	Name       string  `json:"name"`
	Path       string  `json:"path"`
	Type       string  `json:"type"`
	Size       int64   `json:"size"`
	Mode       string  `json:"mode"`
	ModifiedAt string  `json:"modified_at"`
	Target     *string `json:"target,omitempty"` // a symlink's
}

func fileOut(dir string, fi sprite.FileInfo) File {
	f := File{Name: fi.Name, Path: path.Join(dir, fi.Name), Type: fi.Type, Size: fi.Size,
		Mode: "0" + strconv.FormatUint(uint64(fi.Mode.Perm()), 8), ModifiedAt: store.FormatTime(fi.ModTime)}
	if fi.Type == sprite.TypeSymlink {
		t := fi.Target
		f.Target = &t
	}
	return f
}

// SpritePath reads a files request's path: an absolute sprite path,
// cleaned ("" means the home directory).
func SpritePath(p string) (string, error) {
	if p == "" {
		return sprite.HomeDir, nil
	}
	if !strings.HasPrefix(p, "/") || len(p) > 4096 || strings.ContainsRune(p, 0) {
		return "", store.Errorf(store.BadRequest, "path must be an absolute path in the sprite")
	}
	return path.Clean(p), nil
}

// fileError is the answer for a path the sprite does not have.
func fileError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return store.Errorf(store.NotFound, "Path not found in the session's sprite")
	}
	return err
}

// ListFiles lists directory p of a sprite (a file or link lists as itself).
func ListFiles(ctx context.Context, sp sprite.Sprite, p string) ([]File, error) {
	st, err := sp.Stat(ctx, p)
	if err != nil {
		return nil, fileError(err)
	}
	if st.Type != sprite.TypeDir {
		return []File{fileOut(path.Dir(p), st)}, nil
	}
	list, err := sp.ReadDir(ctx, p)
	if err != nil {
		return nil, fileError(err)
	}
	out := make([]File, len(list))
	for i, fi := range list {
		out[i] = fileOut(p, fi)
	}
	return out, nil
}

// ServeFile sends file p of a sprite as an attachment, refusing one over
// limit (413) and a directory (400). Errors come before anything is
// written.
func ServeFile(w http.ResponseWriter, r *http.Request, sp sprite.Sprite, p string, limit int64) error {
	f, fi, err := sp.Open(r.Context(), p)
	if err != nil {
		if st, serr := sp.Stat(r.Context(), p); serr == nil && st.Type == sprite.TypeDir {
			return store.Errorf(store.BadRequest, "%s is a directory: list it, or download its archive", p)
		}
		return fileError(err)
	}
	defer f.Close()
	if limit <= 0 {
		limit = DefaultMaxDownload
	}
	if fi.Size > limit {
		return store.Errorf(store.TooLarge, "File too large to download (%d bytes; the limit is %d)", fi.Size, limit)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fi.Name}))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, io.LimitReader(f, fi.Size)) // a file that grew since is cut at its size then
	return nil
}

// ServeArchive streams directory p of a sprite as a .tar.gz named after
// the session: files, directories and symlinks (as links); what cannot be
// read (a hard-linked or special file) is left out. A client that leaves
// stops it. Errors come before anything is written.
func ServeArchive(w http.ResponseWriter, r *http.Request, sp sprite.Sprite, sessionID, p string) error {
	st, err := sp.Stat(r.Context(), p)
	if err != nil {
		return fileError(err)
	}
	if st.Type != sprite.TypeDir {
		return store.Errorf(store.BadRequest, "%s is not a directory: download it as a file", p)
	}
	base := path.Base(p)
	if base == "/" {
		base = "sprite"
	}
	name := sessionID[:min(8, len(sessionID))] + "-" + base + ".tar.gz"
	h := w.Header()
	h.Set("Content-Type", "application/gzip")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.WriteHeader(http.StatusOK)
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	ctx := r.Context()
	type dir struct{ sprite, inTar string }
	stack := []dir{{p, base}}
	for len(stack) > 0 && ctx.Err() == nil {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		list, err := sp.ReadDir(ctx, d.sprite)
		if err != nil {
			continue // gone meanwhile
		}
		if tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.inTar + "/", Mode: 0o755}) != nil {
			return nil // the client left
		}
		for _, fi := range list {
			if ctx.Err() != nil {
				return nil
			}
			sp2, inTar := path.Join(d.sprite, fi.Name), d.inTar+"/"+fi.Name
			switch fi.Type {
			case sprite.TypeDir:
				stack = append(stack, dir{sp2, inTar})
			case sprite.TypeSymlink:
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: inTar, Linkname: fi.Target, Mode: 0o777, ModTime: fi.ModTime})
			case sprite.TypeFile:
				f, ofi, err := sp.Open(ctx, sp2)
				if err != nil {
					continue
				}
				err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: inTar, Size: ofi.Size, Mode: int64(ofi.Mode.Perm()), ModTime: ofi.ModTime})
				if err == nil {
					_, err = io.Copy(tw, io.LimitReader(f, ofi.Size))
				}
				f.Close()
				if err != nil {
					return nil // the client left (or the file shrank: the archive is cut)
				}
			}
		}
	}
	tw.Close()
	gz.Close()
	return nil
}

// startOnWrite sends a 200 with its headers before the first byte, so an
// error found before any output can still be answered as JSON.
type startOnWrite struct {
	w       http.ResponseWriter
	started bool
}

func (s *startOnWrite) start() {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "text/x-diff; charset=utf-8")
		s.w.WriteHeader(http.StatusOK)
	}
}

func (s *startOnWrite) Write(p []byte) (int, error) {
	s.start()
	return s.w.Write(p)
}

// ServeDiff sends the unified diff of the user's session id's
// repositories (see Diff) as text/x-diff, empty when there is none.
// Errors found before any output are returned for the caller to answer.
func (s *Service) ServeDiff(w http.ResponseWriter, r *http.Request, userID, id string) error {
	out := &startOnWrite{w: w}
	if err := s.Diff(r.Context(), userID, id, out); err != nil && !out.started {
		return err
	}
	out.start()
	return nil
}
