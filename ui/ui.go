// Package ui is aod's web UI for people: server-rendered pages and static
// assets embedded in the binary, cookie login with CSRF protection, and the
// handlers behind every page, including the session page's live log stream.
package ui

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

//go:embed templates/*.html static/*
var embedded embed.FS

// Config holds what the UI needs besides the store and the runner.
type Config struct {
	// Registration is "open" (anyone may create an account, the default)
	// or "closed" (operators create users with the CLI).
	Registration string
	// Streams runs the session page's live stream (shared with the API's;
	// nil: a hub of its own with the defaults).
	Streams *sse.Hub
	Logger  *slog.Logger
	// Secure marks cookies Secure even when a request doesn't look like
	// HTTPS (TLS, or a proxy's X-Forwarded-Proto: https).
	Secure bool
	// TrustedProxies are the peers whose X-Forwarded-For and -Proto are
	// believed (a reverse proxy in front of aod); from anyone else they
	// are ignored.
	TrustedProxies []netip.Prefix
	// MaxDownload is the largest sprite file the Files page serves (0:
	// sessions.DefaultMaxDownload).
	MaxDownload int64
	// EgressAllow is the operator's --egress-allow rules: a webhook whose
	// URL names a private or loopback address is refused unless one of
	// them allows it, as the API refuses it (validate.WebhookTarget).
	EgressAllow []egress.Rule
	// Sandbox is where the server runs sessions (the runner's: bwrap,
	// none or sprites), said on the dashboard; "" says nothing.
	Sandbox string
}

// Registration modes.
const (
	RegistrationOpen   = "open"
	RegistrationClosed = "closed"
)

// pages are the templates every start must find; each is parsed with
// base.html, which lays out the page around its "content".
var pages = []string{
	"landing", "login", "register", "welcome", "dashboard", "api_keys",
	"agents", "agent_new", "agent_detail", "environments", "environment_new", "environment_detail",
	"agent_edit", "agent_version", "environment_edit", "environment_version", "versions",
	"sessions", "session_detail", "session_files", "session_diff", "error", "docs",
	"webhooks", "webhook_detail", "settings_secrets",
}

// UI serves the pages.
type UI struct {
	db      *store.DB
	sess    *sessions.Service
	cfg     Config
	log     *slog.Logger
	pages   map[string]*template.Template
	assets  map[string]*asset // by served name, hashed and plain
	urls    map[string]string // plain name -> hashed URL
	secret  []byte            // signs flash cookies and anonymous CSRF tokens
	limiter *limiter
	signups *limiter
	router  *httprouter.Router
}

// New parses the templates and hashes the static files; a missing or broken
// template is an error here, never at request time.
func New(db *store.DB, sess *sessions.Service, cfg Config) (http.Handler, error) {
	return newUI(db, sess, cfg, embedded)
}

func newUI(db *store.DB, sess *sessions.Service, cfg Config, fsys fs.FS) (*UI, error) {
	switch cfg.Registration {
	case "":
		cfg.Registration = RegistrationOpen
	case RegistrationOpen, RegistrationClosed:
	default:
		return nil, fmt.Errorf("registration must be open or closed, got %q", cfg.Registration)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Streams == nil {
		cfg.Streams = sse.NewHub(db, sse.Config{})
	}
	u := &UI{db: db, sess: sess, cfg: cfg, log: cfg.Logger, secret: make([]byte, 32),
		limiter: newLimiter(loginMaxFailures, loginWindow), signups: newLimiter(signupMax, signupWindow)}
	if _, err := rand.Read(u.secret); err != nil {
		return nil, err
	}
	if err := u.loadAssets(fsys); err != nil {
		return nil, err
	}
	if err := u.parseTemplates(fsys); err != nil {
		return nil, err
	}
	u.router = u.routes()
	return u, nil
}

// asset is one static file.
type asset struct {
	body        []byte
	contentType string
	immutable   bool // served under its content hash
}

func (u *UI) loadAssets(fsys fs.FS) error {
	u.assets, u.urls = map[string]*asset{}, map[string]string{}
	entries, err := fs.ReadDir(fsys, "static")
	if err != nil {
		return fmt.Errorf("ui: static files: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		body, err := fs.ReadFile(fsys, "static/"+name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:])[:12] + ext
		ct := contentTypes[ext]
		if ct == "" {
			ct = "application/octet-stream"
		}
		u.assets[hashed] = &asset{body: body, contentType: ct, immutable: true}
		u.assets[name] = &asset{body: body, contentType: ct}
		u.urls[name] = "/static/" + hashed
	}
	return nil
}

var contentTypes = map[string]string{
	".css": "text/css; charset=utf-8",
	".js":  "text/javascript; charset=utf-8",
	".svg": "image/svg+xml",
	".png": "image/png",
	".ico": "image/x-icon",
}

func (u *UI) parseTemplates(fsys fs.FS) error {
	funcs := template.FuncMap{
		"static": func(name string) (string, error) {
			url, ok := u.urls[name]
			if !ok {
				return "", fmt.Errorf("no static file %q", name)
			}
			return url, nil
		},
		"when":     formatWhen,
		"whenPtr":  formatWhenPtr,
		"shortID":  shortID,
		"exitCode": exitCode,
		"size":     formatSize,
		"took":     formatTook,
		"ptr":      func(t time.Time) *time.Time { return &t },
		"deref":    func(s *string) string { return *s },
		"usd":      formatUSD,
	}
	base, err := fs.ReadFile(fsys, "templates/base.html")
	if err != nil {
		return fmt.Errorf("ui: templates: %w", err)
	}
	u.pages = map[string]*template.Template{}
	for _, name := range pages {
		body, err := fs.ReadFile(fsys, "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("ui: template %s: %w", name, err)
		}
		t, err := template.New("base.html").Funcs(funcs).Parse(string(base))
		if err != nil {
			return fmt.Errorf("ui: template base.html: %w", err)
		}
		if _, err := t.New(name + ".html").Parse(string(body)); err != nil {
			return fmt.Errorf("ui: template %s: %w", name, err)
		}
		// A static file a page names must exist now, not when it renders.
		for _, m := range staticRefRE.FindAllStringSubmatch(string(base)+string(body), -1) {
			if _, ok := u.urls[m[1]]; !ok {
				return fmt.Errorf("ui: template %s: no static file %q", name, m[1])
			}
		}
		for _, block := range []string{"title", "content"} {
			if t.Lookup(block) == nil {
				return fmt.Errorf("ui: template %s defines no %q block", name, block)
			}
		}
		u.pages[name] = t
	}
	return nil
}

var staticRefRE = regexp.MustCompile(`\bstatic\s+"([^"]+)"`)

func formatWhen(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func formatWhenPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return formatWhen(*t)
}

// formatTook is how long from start to end ("—" before it started; until
// now while it runs), to the second: "1m05s".
func formatTook(start, end *time.Time) string {
	if start == nil {
		return "—"
	}
	stop := time.Now()
	if end != nil {
		stop = *end
	}
	return stop.Sub(*start).Round(time.Second).String()
}

// formatUSD is a cost in dollars, "—" when unknown: "$0.0123".
func formatUSD(u *store.UsageView) string {
	if u == nil || u.CostUSD == nil {
		return "—"
	}
	return "$" + strconv.FormatFloat(*u.CostUSD, 'f', 4, 64)
}

// formatSize is a byte count to one decimal of its largest binary unit:
// "12.3 MiB".
func formatSize(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " bytes"
	}
	f, unit := float64(n)/1024, units[0]
	for _, u := range units[1:] {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + unit
}

func shortID(id string) string {
	if len(id) <= 8 {
		return id
	}
	return id[:8] + "…"
}

func exitCode(c *int) string {
	if c == nil {
		return "—"
	}
	return fmt.Sprint(*c)
}

// ServeHTTP answers HEAD like GET (net/http drops the body), sets the
// headers every UI response carries, and routes.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		r = r.Clone(r.Context())
		r.Method = http.MethodGet
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
	u.router.ServeHTTP(w, r)
}

func (u *UI) serveStatic(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	a, ok := u.assets[ps.ByName("name")]
	if !ok {
		u.renderError(w, r, nil, http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	if a.immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	w.Write(a.body)
}

// view is what every template gets: the layout's needs plus the page's.
type view struct {
	User         *store.User
	CSRF         string
	Flashes      []flash
	Nav          string // the nav entry to mark current
	Registration bool   // registration is open
	D            any    // the page's own data
}

// render executes a page into a buffer first so a template error becomes a
// clean 500 instead of half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, page string, sess *session, data any, extra ...flash) {
	v := view{D: data, Nav: navFor(r.URL.Path), Registration: u.cfg.Registration == RegistrationOpen}
	if sess != nil {
		v.User, v.CSRF = &sess.User, sess.CSRF
	} else {
		v.CSRF = u.anonCSRF(w, r)
	}
	v.Flashes = append(u.takeFlashes(w, r), extra...)
	var buf bytes.Buffer
	if err := u.pages[page].ExecuteTemplate(&buf, "base.html", v); err != nil {
		u.log.Error("ui: render", "page", page, "err", err)
		http.Error(w, "Internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Pages can hold one-time keys and CSRF tokens: never cache them.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func navFor(p string) string {
	for _, n := range []string{"api-keys", "webhooks", "settings/secrets", "agents", "environments", "sessions"} {
		if p == "/ui/"+n || strings.HasPrefix(p, "/ui/"+n+"/") {
			return n
		}
	}
	if p == "/ui/" {
		return "dashboard"
	}
	return ""
}

// errorPage is the data of error.html.
type errorPage struct {
	Code    int
	Heading string
	Message string
}

var errorCopy = map[int]errorPage{
	http.StatusBadRequest:          {Heading: "Bad request", Message: "The request could not be understood."},
	http.StatusForbidden:           {Heading: "Forbidden", Message: "The form was missing its security token or it did not match. Go back, reload the page and try again."},
	http.StatusNotFound:            {Heading: "Page not found", Message: "There is nothing here, or it belongs to someone else."},
	http.StatusMethodNotAllowed:    {Heading: "Method not allowed", Message: "This page does not accept that kind of request."},
	http.StatusInternalServerError: {Heading: "Something went wrong", Message: "The server could not finish this request. It has been logged."},
}

func (u *UI) renderError(w http.ResponseWriter, r *http.Request, sess *session, status int) {
	p := errorCopy[status]
	p.Code = status
	if p.Heading == "" {
		p.Heading = http.StatusText(status)
	}
	u.render(w, r, status, "error", sess, p)
}

// fail answers a handler's error with a page: a domain error's code picks
// the status and, for a client's mistake, its message is shown (never a
// 500 page for one); a not-found says nothing of whose the object is.
// Anything else is logged and is the 500 page.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	if errors.Is(err, errBadForm) {
		u.renderError(w, r, sess, http.StatusBadRequest)
		return
	}
	if status := store.HTTPStatus(err); status != http.StatusInternalServerError {
		p := errorCopy[status]
		p.Code = status
		if p.Heading == "" {
			p.Heading = http.StatusText(status)
		}
		if status != http.StatusNotFound {
			p.Message = store.ErrorMessage(err)
		}
		store.SetRetryAfter(w.Header(), err)
		u.render(w, r, status, "error", sess, p)
		return
	}
	u.log.Error("ui: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	u.renderError(w, r, sess, http.StatusInternalServerError)
}

// refuse answers a refused form action the way every action form does: the
// API's message as an error flash on a redirect back. Internal errors are
// returned for the 500 page instead.
func (u *UI) refuse(w http.ResponseWriter, r *http.Request, back string, err error) error {
	if store.ErrorCode(err) == store.Internal {
		return err
	}
	u.redirect(w, r, back, failure(flashMessage(err)))
	return nil
}
