package server

import (
	"archive/tar"
	"compress/gzip"
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
	"github.com/julienschmidt/httprouter"
)

// The files API reads a session's sprite while it exists: paths are sprite
// paths (the home directory, the workspace, /tmp, repository mounts), and
// no link is followed (see sprite.Sprite's Stat, ReadDir and Open).

// DefaultMaxDownload is the largest file GET /sessions/{id}/files/content
// serves when the server is given no limit.
const DefaultMaxDownload = 256 << 20

type fileJSON struct {
	Name       string  `json:"name"`
	Path       string  `json:"path"`
	Type       string  `json:"type"`
	Size       int64   `json:"size"`
	Mode       string  `json:"mode"`
	ModifiedAt string  `json:"modified_at"`
	Target     *string `json:"target,omitempty"` // a symlink's
}

func fileOut(dir string, fi sprite.FileInfo) fileJSON {
	f := fileJSON{Name: fi.Name, Path: path.Join(dir, fi.Name), Type: fi.Type, Size: fi.Size,
		Mode: "0" + strconv.FormatUint(uint64(fi.Mode.Perm()), 8), ModifiedAt: store.FormatTime(fi.ModTime)}
	if fi.Type == sprite.TypeSymlink {
		t := fi.Target
		f.Target = &t
	}
	return f
}

// spritePath is the ?path= of a files request: an absolute sprite path,
// cleaned ("" means the home directory).
func spritePath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
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

// sessionSprite reads the request's session id and path and finds the
// sprite.
func (s *Server) sessionSprite(r *http.Request, ps httprouter.Params, u *store.User) (sprite.Sprite, string, string, error) {
	id, err := pathID(ps, "Session")
	if err != nil {
		return nil, "", "", err
	}
	p, err := spritePath(r)
	if err != nil {
		return nil, "", "", err
	}
	sp, err := s.sessions.Sprite(r.Context(), u.ID, id)
	return sp, id, p, err
}

func (s *Server) handleSessionFiles(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	sp, _, p, err := s.sessionSprite(r, ps, u)
	if err != nil {
		return err
	}
	st, err := sp.Stat(r.Context(), p)
	if err != nil {
		return fileError(err)
	}
	if st.Type != sprite.TypeDir {
		// A file (or link) lists as itself.
		writeJSON(w, http.StatusOK, map[string]any{"data": []fileJSON{fileOut(path.Dir(p), st)}})
		return nil
	}
	list, err := sp.ReadDir(r.Context(), p)
	if err != nil {
		return fileError(err)
	}
	out := make([]fileJSON, len(list))
	for i, fi := range list {
		out[i] = fileOut(p, fi)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
	return nil
}

func (s *Server) handleSessionFileContent(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	sp, _, p, err := s.sessionSprite(r, ps, u)
	if err != nil {
		return err
	}
	f, fi, err := sp.Open(r.Context(), p)
	if err != nil {
		if st, serr := sp.Stat(r.Context(), p); serr == nil && st.Type == sprite.TypeDir {
			return store.Errorf(store.BadRequest, "%s is a directory: list it with /files or download /archive", p)
		}
		return fileError(err)
	}
	defer f.Close()
	limit := s.cfg.MaxDownload
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

// handleSessionArchive streams a directory of the sprite as a .tar.gz:
// files, directories and symlinks (as links); what cannot be read (a
// hard-linked or special file) is left out. A client that leaves stops it.
func (s *Server) handleSessionArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	sp, id, p, err := s.sessionSprite(r, ps, u)
	if err != nil {
		return err
	}
	st, err := sp.Stat(r.Context(), p)
	if err != nil {
		return fileError(err)
	}
	if st.Type != sprite.TypeDir {
		return store.Errorf(store.BadRequest, "%s is not a directory: download it with /files/content", p)
	}
	base := path.Base(p)
	if base == "/" {
		base = "sprite"
	}
	name := id[:8] + "-" + base + ".tar.gz"
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

// handleSessionDiff answers the unified diff of the session's repositories
// against the commits they were cloned at (empty without repositories or
// changes), computed inside the sprite.
func (s *Server) handleSessionDiff(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	out := &startOnWrite{w: w}
	if err := s.sessions.Diff(r.Context(), u.ID, id, out); err != nil && !out.started {
		return err
	}
	out.start()
	return nil
}
