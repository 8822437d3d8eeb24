// Package server is aod's HTTP API: routes, bearer authentication, request
// decoding and validation, and the one place domain errors become HTTP
// statuses and bodies.
package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// Config holds what the server needs besides the store and the runner.
type Config struct {
	Version string
	Logger  *slog.Logger
	// Streams runs the SSE streams (shared with the UI's; nil: a hub of
	// its own with the defaults).
	Streams *sse.Hub
	// EgressAllow is the operator's --egress-allow rules, which webhook
	// targets obey as sprites do.
	EgressAllow []egress.Rule
	// MaxDownload is the largest file the files API serves (0: the
	// default, DefaultMaxDownload).
	MaxDownload int64
	// UI serves the web pages: "/", "/ui/..." and "/static/..." (nil: none).
	UI http.Handler
	// Limits says how each sprite limit is enforced (disk, memory, pids,
	// file_size), shown by /health.
	Limits map[string]string
}

// Server serves the API.
type Server struct {
	db       *store.DB
	sessions *sessions.Service
	cfg      Config
	log      *slog.Logger
	router   *httprouter.Router
}

// New builds the API handler over an open store and the session use cases.
func New(db *store.DB, sess *sessions.Service, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Streams == nil {
		cfg.Streams = sse.NewHub(db, sse.Config{})
	}
	s := &Server{db: db, sessions: sess, cfg: cfg, log: cfg.Logger}
	s.router = s.routes()
	return s
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	requestUserKey
)

// requestUser is where authed leaves the caller's id for the access log.
type requestUser struct{ id string }

// ServeHTTP adds a request id, CORS for the bearer-token API and an access
// log line, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := newRequestID()
	who := &requestUser{}
	r = r.WithContext(context.WithValue(context.WithValue(r.Context(), requestIDKey, id), requestUserKey, who))
	w.Header().Set("X-Request-Id", id)
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	if isAPIPath(r.URL.Path) {
		// The API authenticates with bearer tokens, never cookies, so any
		// origin may call it; cookie routes (the UI) never get CORS headers.
		rec.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h := rec.Header()
			h.Set("Access-Control-Allow-Methods", "DELETE, GET, OPTIONS, PATCH, POST, PUT")
			h.Set("Access-Control-Allow-Headers", "accept, authorization, content-type, last-event-id, user-agent, x-requested-with")
			h.Set("Access-Control-Max-Age", "86400")
			rec.WriteHeader(http.StatusOK)
			return
		}
	}
	s.router.ServeHTTP(rec, r)
	attrs := []any{"id", id, "method", r.Method, "path", r.URL.Path, "status", rec.status,
		"duration_ms", time.Since(start).Milliseconds()}
	if who.id != "" {
		attrs = append(attrs, "user", who.id) // the caller's id; never a token
	}
	s.log.Info("request", attrs...)
}

// isAPIPath tells the bearer-token API from the cookie-authenticated UI.
func isAPIPath(p string) bool {
	return p != "/" && p != "/ui" && !strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "/static/")
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder remembers the status for the access log; Unwrap lets
// http.ResponseController reach Flush and deadlines for streams.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// writeJSON writes v with Content-Type application/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	w.Header().Set("Content-Type", "application/json")
	if err := enc.Encode(v); err != nil {
		// A value that cannot be encoded is aod's fault: the contract's
		// 500, as JSON like every other answer.
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"detail":"Internal server error"}`+"\n")
		return
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type detail struct {
	Detail any `json:"detail"`
}

func writeDetail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, detail{msg})
}

// writeError is the one place errors become responses: a domain error's
// code picks the status and its message (or field list) the detail; extra
// members (a quota's limit and active count) ride along. Internal causes
// are logged with the request id and never shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := store.AsError(err)
	status := store.HTTPStatus(err)
	if e == nil || status == http.StatusInternalServerError {
		id, _ := r.Context().Value(requestIDKey).(string)
		s.log.Error("internal error", "id", id, "method", r.Method, "path", r.URL.Path, "err", err)
		writeDetail(w, http.StatusInternalServerError, "Internal server error (request "+id+")")
		return
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	store.SetRetryAfter(w.Header(), err)
	body := map[string]any{"detail": e.Message}
	if e.Fields != nil {
		body["detail"] = e.Fields
	}
	for k, v := range e.Extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}

// readObject reads a request body that must be one JSON object of at most
// validate.MaxBodyBytes.
func readObject(w http.ResponseWriter, r *http.Request) (*validate.Object, error) {
	return validate.Read(http.MaxBytesReader(w, r.Body, validate.MaxBodyBytes))
}

// handler is an authenticated route's handler.
type handler func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error

// authed checks the bearer token, then runs h and writes its error.
func (s *Server) authed(h handler) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		u, err := s.authenticate(r)
		if err == nil {
			if who, ok := r.Context().Value(requestUserKey).(*requestUser); ok {
				who.id = u.ID
			}
			err = h(w, r, ps, u)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Server) authenticate(r *http.Request) (*store.User, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, store.Errorf(store.Unauthorized, "Missing or invalid Authorization header")
	}
	return s.db.Authenticate(r.Context(), token)
}

// pathID returns the canonical id in the URL, or what's 404 when it is
// not a UUID.
func pathID(ps httprouter.Params, what string) (string, error) {
	return validate.ID(ps.ByName("id"), what)
}
