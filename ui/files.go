package ui

import (
	"bytes"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// The session's Files and Diff pages: the files API's reads, behind the
// login cookie.

type crumb struct{ Name, Path string }

type filesPage struct {
	S      *store.Session
	Path   string
	Crumbs []crumb // the path's directories, for the breadcrumb
	Parent string  // "" at a tree part's top
	Files  []sessions.File
}

type diffPage struct {
	S    *store.Session
	Diff string
	Cut  bool // longer than the page shows: download it whole
}

// maxDiffPage bounds the diff a page shows.
const maxDiffPage = 1 << 20

// spriteFor reads a files request: the user's session, its sprite, and
// the sprite path asked for.
func (u *UI) spriteFor(r *http.Request, ps httprouter.Params, s *session) (*store.Session, sprite.Sprite, string, error) {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := sessions.SpritePath(r.URL.Query().Get("path"))
	if err != nil {
		return nil, nil, "", err
	}
	sp, err := u.sess.Sprite(r.Context(), s.User.ID, sess.ID)
	return sess, sp, p, err
}

func (u *UI) handleSessionFiles(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, sp, p, err := u.spriteFor(r, ps, s)
	if err != nil {
		return err
	}
	list, err := sessions.ListFiles(r.Context(), sp, p)
	if err != nil {
		return err
	}
	page := filesPage{S: sess, Path: p, Files: list}
	acc := ""
	for _, part := range strings.Split(strings.Trim(p, "/"), "/") {
		if part == "" {
			continue
		}
		acc += "/" + part
		page.Crumbs = append(page.Crumbs, crumb{Name: part, Path: acc})
	}
	if parent := path.Dir(p); parent != p {
		if _, err := sp.Stat(r.Context(), parent); err == nil {
			page.Parent = parent
		}
	}
	u.render(w, r, http.StatusOK, "session_files", s, page)
	return nil
}

func (u *UI) handleSessionFileContent(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	_, sp, p, err := u.spriteFor(r, ps, s)
	if err != nil {
		return err
	}
	return sessions.ServeFile(w, r, sp, p, u.cfg.MaxDownload)
}

func (u *UI) handleSessionArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, sp, p, err := u.spriteFor(r, ps, s)
	if err != nil {
		return err
	}
	return sessions.ServeArchive(w, r, sp, sess.ID, p)
}

// limitedBuffer keeps the first n bytes written and notes the rest.
type limitedBuffer struct {
	b   bytes.Buffer
	n   int
	cut bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room < len(p) {
		l.b.Write(p[:max(room, 0)])
		l.cut = true
		return len(p), nil
	}
	return l.b.Write(p)
}

func (u *UI) handleSessionDiff(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return err
	}
	id := sess.ID
	if r.URL.Query().Get("download") != "" {
		return u.sess.ServeDiff(w, r, s.User.ID, id)
	}
	out := &limitedBuffer{n: maxDiffPage}
	if err := u.sess.Diff(r.Context(), s.User.ID, id, io.Writer(out)); err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "session_diff", s, diffPage{S: sess, Diff: out.b.String(), Cut: out.cut})
	return nil
}
