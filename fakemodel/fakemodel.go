// Package fakemodel is a scripted stand-in for the model APIs the agent CLIs
// call, so they run offline.
//
// One Server answers the Anthropic Messages API (Claude Code, opencode), the
// OpenAI Responses and Chat Completions APIs (Codex, opencode) and the Gemini
// API (Gemini CLI) on the paths the CLIs use when their base URL points at it.
// It records every request so tests can assert on what a CLI sent (resume
// carries earlier turns; nothing reached an unknown route).
//
// Routes (any key, any query; /responses, /chat/completions and /models are
// also served without /v1, for base URLs that already end in it):
//
//	POST /v1/messages, /v1/messages/count_tokens       Anthropic (SSE when "stream": true)
//	POST /v1/responses                                  OpenAI Responses (SSE when "stream": true)
//	POST /v1/chat/completions                           OpenAI Chat Completions
//	GET  /v1/models                                     OpenAI and Anthropic model lists
//	POST /v1beta/models/{model}:streamGenerateContent   Gemini (SSE with ?alt=sse, else a JSON array)
//	POST /v1beta/models/{model}:generateContent, :countTokens
//	GET  /v1beta/models                                 Gemini model list
//	HEAD, GET /                                         connectivity probe
//
// Anything else is a 404 recorded as "unknown", so a test can assert that
// every request a CLI made reached a known route.
//
// What it answers comes from a Script (see Script for the JSON format).
// Without one, every request gets the deterministic text
// "fake reply to: <last user message>".
package fakemodel

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The APIs a request can be routed to, as recorded in Request.API.
const (
	APIAnthropic       = "anthropic"
	APIOpenAIResponses = "openai-responses"
	APIOpenAIChat      = "openai-chat"
	APIGemini          = "gemini"
	// APIProbe is a connectivity check of the base URL: Claude Code (on
	// Bun) sends HEAD / before its first call. It is answered 200.
	APIProbe   = "probe"
	APIUnknown = "unknown"
)

// maxBody bounds a request body. CLI requests carry tens to hundreds of KB of
// system prompt and history; this only stops a runaway client.
const maxBody = 64 << 20

// Request is one request the server received.
type Request struct {
	Method string
	Path   string // path and query, as sent
	Header http.Header
	Body   []byte // as sent, or gunzipped when Content-Encoding is gzip
	API    string // one of the API* constants

	// Model is the model the request asked for ("" when none applies).
	Model string
	// LastUserMessage is what rules match against: the last user text, or
	// the tool result a request hands back after a tool call.
	LastUserMessage string
}

// Server is an http.Handler serving the fake model APIs. It is safe for
// concurrent use.
type Server struct {
	script *Script
	now    func() time.Time // tests pin it for golden transcripts

	mu       sync.Mutex
	requests []Request
	counts   []int // per rule: requests that matched its contains and api
	seq      int   // id sequence, so ids are unique and deterministic
}

// New returns a server answering from s; a nil s answers every request with
// "fake reply to: <last user message>".
func New(s *Script) *Server {
	srv := &Server{script: s, now: time.Now}
	if s != nil {
		srv.counts = make([]int, len(s.Rules))
	}
	return srv
}

// Requests returns every request received since New or Reset, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		r.Header = r.Header.Clone()
		r.Body = bytes.Clone(r.Body)
		out[i] = r
	}
	return out
}

// Reset forgets the recorded requests and restarts the rules' nth counters
// and the id sequence.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	clear(s.counts)
	s.seq = 0
}

func (s *Server) record(r *http.Request, body []byte, api string, c *conversation) {
	rec := Request{
		Method: r.Method,
		Path:   r.URL.RequestURI(),
		Header: r.Header.Clone(),
		Body:   body,
		API:    api,
	}
	if c != nil {
		rec.Model = c.model
		rec.LastUserMessage = c.lastUser
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

// nextID returns a fresh id with the given prefix, e.g. "msg_fake_000001".
func (s *Server) nextID(prefix string) string {
	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()
	return fmt.Sprintf("%s_fake_%06d", prefix, n)
}

// ServeHTTP routes a request to the API it belongs to.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.record(r, body, APIUnknown, nil)
		writeJSON(w, http.StatusBadRequest, obj{"error": obj{"type": "invalid_request", "message": "fake model API: " + err.Error()}})
		return
	}
	path := r.URL.Path
	switch {
	case (r.Method == http.MethodHead || r.Method == http.MethodGet) && path == "/":
		s.record(r, body, APIProbe, nil)
		writeJSON(w, http.StatusOK, obj{"status": "ok", "service": "aod fake model API"})
	case r.Method == http.MethodPost && path == "/v1/messages":
		s.anthropicMessages(w, r, body)
	case r.Method == http.MethodPost && path == "/v1/messages/count_tokens":
		s.anthropicCountTokens(w, r, body)
	case r.Method == http.MethodPost && (path == "/v1/responses" || path == "/responses"):
		s.openaiResponses(w, r, body)
	case r.Method == http.MethodPost && (path == "/v1/chat/completions" || path == "/chat/completions"):
		s.openaiChat(w, r, body)
	case r.Method == http.MethodGet && (path == "/v1/models" || path == "/models"):
		s.listModels(w, r, body)
	case r.Method == http.MethodPost && geminiPath(path) != nil:
		s.gemini(w, r, body, geminiPath(path))
	case r.Method == http.MethodGet && path == "/v1beta/models":
		s.geminiListModels(w, r, body)
	default:
		s.record(r, body, APIUnknown, nil)
		writeJSON(w, http.StatusNotFound, obj{"error": obj{
			"type":    "not_found",
			"message": "fake model API: no route for " + r.Method + " " + path,
		}})
	}
}

func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = http.MaxBytesReader(nil, r.Body, maxBody)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return b, fmt.Errorf("read body: %w", err)
	}
	return b, nil
}

// obj keeps the wire shapes below readable; encoding/json sorts its keys, so
// output is deterministic.
type obj = map[string]any

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// marshal is json.Marshal without HTML escaping, so "<" in echoed prompts
// stays readable in transcripts.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// sseWriter writes server-sent events, flushing each one so the CLI sees
// the stream as it is produced.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func newSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// event writes "event: name" (omitted when name is "") and "data: <v>",
// where v is JSON-encoded unless it is a string.
func (s *sseWriter) event(name string, v any) {
	if s.err != nil {
		return
	}
	var data []byte
	if str, ok := v.(string); ok {
		data = []byte(str)
	} else if data, s.err = marshal(v); s.err != nil {
		return
	}
	var buf bytes.Buffer
	if name != "" {
		buf.WriteString("event: " + name + "\n")
	}
	buf.WriteString("data: ")
	buf.Write(data)
	buf.WriteString("\n\n")
	if _, s.err = s.w.Write(buf.Bytes()); s.err != nil {
		return
	}
	s.err = s.rc.Flush()
}

// chunks splits s into pieces of at most n runes, so streamed text and tool
// arguments arrive in several deltas the way a real model sends them.
func chunks(s string, n int) []string {
	if s == "" {
		return nil
	}
	var out []string
	r := []rune(s)
	for len(r) > n {
		out = append(out, string(r[:n]))
		r = r[n:]
	}
	return append(out, string(r))
}

// tokens is a rough token count: about four bytes a token, at least one.
func tokens(n int) int {
	return n/4 + 1
}

// truncate cuts s to at most n runes.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
