// Package spritesfake is a fake of the Fly.io Sprites service for tests:
// an httptest server speaking the HTTP and WebSocket protocol of
// docs/spec runner.md §6 (sprite lifecycle, exec over WebSocket with
// attach, kill and session listing, the filesystem API and the network
// policy), with fault injection and rate limits.
//
// A sprite is a directory on the host that looks like a machine's writable
// root where it matters (home/sprite, workspace, tmp). Commands are real
// processes run under bubblewrap, which binds those three directories at
// /home, /workspace and /tmp and the host's system directories read-only,
// so the paths a client uses are the paths the command sees. Tests that
// exec call RequireExec first.
package spritesfake

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a Fake. The zero value is a working fake.
type Options struct {
	// Token is the bearer token every request must carry (401 otherwise);
	// default "fake-token".
	Token string
	// CloseDelay is how long the exec socket stays open after the exit
	// frame (the real service keeps it ~5 s); default 300ms.
	CloseDelay time.Duration
	// Capabilities are advertised in X-Sprite-Capabilities on the exec
	// handshake: nil means ["signal"]; an empty non-nil slice leaves the
	// header out. Without "signal" the fake ignores in-band signal
	// messages, as a server that does not know them would.
	Capabilities []string
	// MaxSprites is the concurrent sprite limit: a create over it answers
	// 429 concurrent_sprite_limit_exceeded (0: no limit).
	MaxSprites int
	// CreateRate is how many creates are allowed per second: over it a
	// create answers 429 sprite_creation_rate_limited with Retry-After
	// (0: no limit).
	CreateRate int
	// CreateDelay makes every create this slow.
	CreateDelay time.Duration
	// Root is where sprites' directories live (default tb.TempDir()).
	Root string
	// ReplayLimit is how many bytes of output each exec session keeps for
	// replay on attach (default 8 MiB). Beyond it the oldest output is
	// discarded: a later attach replays only the newest ReplayLimit bytes,
	// and a slow attached reader that falls that far behind skips ahead.
	ReplayLimit int
	// Bwrap is the bubblewrap binary; default: "bwrap" looked up in PATH.
	Bwrap string
}

// Fault makes the fake misbehave for some requests of one operation.
type Fault struct {
	// Op is the operation: "create", "get", "delete", "list", "exec",
	// "attach", "kill", "exec.list", "fs.read", "fs.write", "fs.list",
	// "fs.delete", "fs.chmod", "fs.rename", "policy" (GET and POST).
	Op string
	// Status, when set, is answered instead of serving, with the service's
	// JSON error body {"error": Code, "message": ...}.
	Status int
	// Code is the "error" code of the body, e.g.
	// "sprite_creation_rate_limited"; default derived from Status.
	Code string
	// RetryAfter, when > 0, adds a Retry-After header (whole seconds,
	// rounded up, at least 1) and retry_after_seconds in the body.
	RetryAfter time.Duration
	// Times is how many requests the fault applies to (default 1).
	Times int
	// DropAfterFrames (exec and attach, with Status 0) serves normally,
	// then drops the TCP connection abruptly, without a close frame,
	// after that many output frames (stdout or stderr); the process keeps
	// running as after any other disconnect.
	DropAfterFrames int
}

// ExecInfo describes one exec session, running or finished.
type ExecInfo struct {
	ID         int
	Argv       []string
	Dir        string
	Env        []string // nil: the sprite's default environment
	Stdin      bool
	Detachable bool
	// MaxRunAfterDisconnect is how long the process outlives its last
	// client (0: forever).
	MaxRunAfterDisconnect time.Duration
	Created               time.Time
	PID                   int // host pid of bwrap, the process group leader
	Active                bool
	ExitCode              int // -1 while active
	Attached              int // clients attached right now
	// KilledAfterDisconnect is set when the process was killed because
	// nobody was attached for MaxRunAfterDisconnect.
	KilledAfterDisconnect bool
}

// Fake is a running fake Sprites service.
type Fake struct {
	tb   testing.TB
	opts Options
	srv  *httptest.Server

	ctx    context.Context // cancelled at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // WebSocket handlers and exec sessions

	mu       sync.Mutex
	closed   bool
	sprites  map[string]*sprite
	faults   []*Fault
	requests map[string]int
	creates  []time.Time // admitted creates in the last second
	nextSess int
}

type sprite struct {
	id, name    string
	dir         string
	status      string
	statusSet   bool // status pinned by SetStatus
	created     time.Time
	updated     time.Time
	lastRunning time.Time
	environment map[string]string
	urlSettings map[string]any
	labels      []string
	policy      []map[string]any
	sessions    []*session
	active      int  // sessions whose process runs
	gone        bool // deleted
}

// New starts a fake and stops it, killing every process, at tb.Cleanup.
func New(tb testing.TB, o Options) *Fake {
	tb.Helper()
	if o.Token == "" {
		o.Token = "fake-token"
	}
	if o.CloseDelay == 0 {
		o.CloseDelay = 300 * time.Millisecond
	}
	if o.Capabilities == nil {
		o.Capabilities = []string{"signal"}
	}
	if o.Root == "" {
		o.Root = tb.TempDir()
	}
	if o.ReplayLimit <= 0 {
		o.ReplayLimit = 8 << 20
	}
	f := &Fake{tb: tb, opts: o, sprites: map[string]*sprite{}, requests: map[string]int{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.srv = httptest.NewServer(f.routes())
	tb.Cleanup(f.Close)
	return f
}

// URL is the base URL; clients append /v1/....
func (f *Fake) URL() string { return f.srv.URL }

// Token is the bearer token the fake accepts.
func (f *Fake) Token() string { return f.opts.Token }

// Close kills every process, ends every socket and stops the server. New
// registers it with tb.Cleanup; calling it again does nothing.
func (f *Fake) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	var all []*session
	for _, sp := range f.sprites {
		all = append(all, sp.sessions...)
	}
	f.mu.Unlock()
	f.cancel()
	for _, s := range all {
		s.forceKill()
	}
	f.wg.Wait()
	f.srv.Close()
}

// track registers a goroutine with the fake's wait group unless the fake is
// closing; it reports false then.
func (f *Fake) track() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

// SpriteDir is the sprite's root directory on the host ("" when there is
// no such sprite).
func (f *Fake) SpriteDir(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sp := f.sprites[name]; sp != nil {
		return sp.dir
	}
	return ""
}

// Sprites are the names of the sprites that exist, sorted.
func (f *Fake) Sprites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.sprites))
	for n := range f.sprites {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Policy is the last network policy's rules posted for the sprite (nil if
// none).
func (f *Fake) Policy(name string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	sp := f.sprites[name]
	if sp == nil || sp.policy == nil {
		return nil
	}
	return cloneRules(sp.policy)
}

// SetStatus pins the status the sprite reports ("running", "warm",
// "cold") until its next exec starts or ends.
func (f *Fake) SetStatus(name, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sp := f.sprites[name]; sp != nil {
		sp.status, sp.statusSet, sp.updated = status, true, time.Now().UTC()
	}
}

// Requests is how many requests of an operation (the Fault.Op names) the
// fake received with a valid token, including those answered by a fault
// or a rate limit.
func (f *Fake) Requests(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[op]
}

// Inject adds a fault; faults of the same operation apply in the order
// they were injected.
func (f *Fake) Inject(fl Fault) {
	if fl.Times <= 0 {
		fl.Times = 1
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fl)
}

// Vanish deletes a sprite behind the client's back, as the service would
// on its own: its processes are killed and its directory removed.
func (f *Fake) Vanish(name string) {
	f.mu.Lock()
	sp := f.sprites[name]
	delete(f.sprites, name)
	if sp != nil {
		sp.gone = true
	}
	f.mu.Unlock()
	if sp != nil {
		f.destroy(sp)
	}
}

// destroy kills a sprite's processes, waits for them and removes its
// directory. The sprite is already out of the map.
func (f *Fake) destroy(sp *sprite) {
	f.mu.Lock()
	sessions := slices.Clone(sp.sessions)
	f.mu.Unlock()
	for _, s := range sessions {
		s.forceKill()
	}
	for _, s := range sessions {
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			f.tb.Errorf("spritesfake: session %d of %s did not end after SIGKILL", s.id, sp.name)
		}
	}
	os.RemoveAll(sp.dir)
}

// ExecSessions describes the sprite's exec sessions, oldest first.
func (f *Fake) ExecSessions(name string) []ExecInfo {
	f.mu.Lock()
	sp := f.sprites[name]
	var sessions []*session
	if sp != nil {
		sessions = slices.Clone(sp.sessions)
	}
	f.mu.Unlock()
	infos := make([]ExecInfo, 0, len(sessions))
	for _, s := range sessions {
		infos = append(infos, s.info())
	}
	return infos
}

// begin counts a request of op and applies the first matching fault: it
// reports false when the fault answered the request, and the number of
// output frames after which to drop the connection (exec and attach).
func (f *Fake) begin(w http.ResponseWriter, op string) (ok bool, dropAfter int) {
	f.mu.Lock()
	f.requests[op]++
	var fl *Fault
	for i, x := range f.faults {
		if x.Op == op {
			fl = x
			if x.Times--; x.Times <= 0 {
				f.faults = slices.Delete(f.faults, i, i+1)
			}
			break
		}
	}
	f.mu.Unlock()
	if fl == nil {
		return true, 0
	}
	if fl.Status == 0 {
		return true, fl.DropAfterFrames
	}
	code := fl.Code
	if code == "" {
		code = defaultCode(fl.Status)
	}
	body := map[string]any{"error": code, "message": "injected fault: " + code}
	if fl.RetryAfter > 0 {
		secs := wholeSeconds(fl.RetryAfter)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		body["retry_after_seconds"] = secs
	}
	writeJSON(w, fl.Status, body)
	return false, 0
}

// wholeSeconds rounds d up to whole seconds, at least 1, as Retry-After
// carries whole seconds.
func wholeSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func defaultCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusGone:
		return "gone"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusInternalServerError:
		return "internal_error"
	case http.StatusBadGateway:
		return "bad_gateway"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	case http.StatusGatewayTimeout:
		return "gateway_timeout"
	}
	return "error"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// apiError answers the service's JSON error body of §6.1.
func apiError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeJSON(w, status, map[string]any{"error": code, "message": fmt.Sprintf(format, args...)})
}

func (f *Fake) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sprites", f.create)
	mux.HandleFunc("GET /v1/sprites", f.list)
	mux.HandleFunc("GET /v1/sprites/{name}", f.get)
	mux.HandleFunc("DELETE /v1/sprites/{name}", f.delete)
	mux.HandleFunc("GET /v1/sprites/{name}/exec", f.execOrList)
	mux.HandleFunc("GET /v1/sprites/{name}/exec/{id}", f.attach)
	mux.HandleFunc("POST /v1/sprites/{name}/exec/{id}/kill", f.kill)
	mux.HandleFunc("GET /v1/sprites/{name}/fs/read", f.fsRead)
	mux.HandleFunc("PUT /v1/sprites/{name}/fs/write", f.fsWrite)
	mux.HandleFunc("GET /v1/sprites/{name}/fs/list", f.fsList)
	mux.HandleFunc("DELETE /v1/sprites/{name}/fs/delete", f.fsDelete)
	mux.HandleFunc("POST /v1/sprites/{name}/fs/chmod", f.fsChmod)
	mux.HandleFunc("POST /v1/sprites/{name}/fs/rename", f.fsRename)
	mux.HandleFunc("GET /v1/sprites/{name}/policy/network", f.getPolicy)
	mux.HandleFunc("POST /v1/sprites/{name}/policy/network", f.postPolicy)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "not_found", "no route for %s %s", r.Method, r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.opts.Token {
			apiError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// lookup finds the request's sprite or answers 404.
func (f *Fake) lookup(w http.ResponseWriter, r *http.Request) *sprite {
	name := r.PathValue("name")
	f.mu.Lock()
	sp := f.sprites[name]
	f.mu.Unlock()
	if sp == nil {
		apiError(w, http.StatusNotFound, "not_found", "sprite %q not found", name)
	}
	return sp
}

// spriteJSON is the sprite object of §6.1. Call with f.mu held.
func (f *Fake) spriteJSON(sp *sprite) map[string]any {
	ts := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Format(time.RFC3339Nano)
	}
	return map[string]any{
		"id":                  sp.id,
		"name":                sp.name,
		"organization":        "fake-org",
		"status":              sp.status,
		"config":              map[string]any{"ram_mb": 8192, "cpus": 8, "region": "fake", "storage_gb": 100},
		"environment":         sp.environment,
		"created_at":          ts(sp.created),
		"updated_at":          ts(sp.updated),
		"url":                 "https://" + sp.name + ".sprites.fake",
		"url_settings":        sp.urlSettings,
		"bucket_name":         "fake-" + sp.id,
		"primary_region":      "fake",
		"version":             "fake",
		"environment_version": "1",
		"labels":              sp.labels,
		"last_running_at":     ts(sp.lastRunning),
		"last_warming_at":     ts(sp.created),
	}
}

type createBody struct {
	Name        string            `json:"name"`
	Environment map[string]string `json:"environment"`
	URLSettings map[string]any    `json:"url_settings"`
	Labels      []string          `json:"labels"`
	// config, wait_for_capacity and runtime are accepted and ignored, as
	// the service documents for config.
}

func (f *Fake) create(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "create"); !ok {
		return
	}
	var body createBody
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body: %v", err)
		return
	}
	if body.Name == "" {
		apiError(w, http.StatusBadRequest, "invalid_request", "name is required")
		return
	}
	if f.opts.CreateDelay > 0 {
		select {
		case <-time.After(f.opts.CreateDelay):
		case <-r.Context().Done():
			return
		case <-f.ctx.Done():
			return
		}
	}
	f.mu.Lock()
	// The spec does not document what the real service answers for a
	// name that exists; the fake treats create as idempotent and returns
	// the existing sprite with 200 (201 is for a new one).
	if sp := f.sprites[body.Name]; sp != nil {
		obj := f.spriteJSON(sp)
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, obj)
		return
	}
	if n := f.opts.MaxSprites; n > 0 && len(f.sprites) >= n {
		count := len(f.sprites)
		f.mu.Unlock()
		// No Retry-After: the limit clears when a sprite is deleted, not
		// after some time.
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"error": "concurrent_sprite_limit_exceeded", "message": fmt.Sprintf("concurrent sprite limit of %d reached", n),
			"limit": n, "current_count": count, "upgrade_available": false,
		})
		return
	}
	now := time.Now()
	if n := f.opts.CreateRate; n > 0 {
		f.creates = slices.DeleteFunc(f.creates, func(t time.Time) bool { return now.Sub(t) >= time.Second })
		if len(f.creates) >= n {
			secs := wholeSeconds(f.creates[0].Add(time.Second).Sub(now))
			f.mu.Unlock()
			h := w.Header()
			h.Set("Retry-After", strconv.Itoa(secs))
			h.Set("X-RateLimit-Limit", strconv.Itoa(n))
			h.Set("X-RateLimit-Remaining", "0")
			h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(time.Duration(secs)*time.Second).Unix(), 10))
			writeJSON(w, http.StatusTooManyRequests, map[string]any{
				"error": "sprite_creation_rate_limited", "message": fmt.Sprintf("at most %d sprite creations per second", n),
				"limit": n, "window_seconds": 1, "retry_after_seconds": secs, "current_count": len(f.creates),
				"upgrade_available": false,
			})
			return
		}
		f.creates = append(f.creates, now)
	}
	id := newID()
	sp := &sprite{
		id: id, name: body.Name, dir: filepath.Join(f.opts.Root, id), status: "warm",
		created: now.UTC(), updated: now.UTC(), environment: body.Environment, urlSettings: body.URLSettings, labels: body.Labels,
	}
	if sp.environment == nil {
		sp.environment = map[string]string{}
	}
	if sp.urlSettings == nil {
		sp.urlSettings = map[string]any{"auth": "sprite"}
	}
	if sp.labels == nil {
		sp.labels = []string{}
	}
	if err := makeSpriteDir(sp.dir); err != nil {
		f.mu.Unlock()
		apiError(w, http.StatusInternalServerError, "internal_error", "make sprite dir: %v", err)
		return
	}
	f.sprites[sp.name] = sp
	obj := f.spriteJSON(sp)
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, obj)
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return "sprite-" + hex.EncodeToString(b[:])
}

// makeSpriteDir lays out a new sprite's root.
func makeSpriteDir(dir string) error {
	for _, d := range []struct {
		p    string
		mode os.FileMode
	}{{"", 0o755}, {"home", 0o755}, {"home/sprite", 0o755}, {"workspace", 0o755}, {"tmp", 0o1777}} {
		p := filepath.Join(dir, d.p)
		if err := os.Mkdir(p, d.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil { // past the umask
			return err
		}
	}
	return nil
}

func (f *Fake) get(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "get"); !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	f.mu.Lock()
	obj := f.spriteJSON(sp)
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, obj)
}

func (f *Fake) delete(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "delete"); !ok {
		return
	}
	name := r.PathValue("name")
	f.mu.Lock()
	sp := f.sprites[name]
	delete(f.sprites, name)
	if sp != nil {
		sp.gone = true
	}
	f.mu.Unlock()
	if sp == nil {
		apiError(w, http.StatusNotFound, "not_found", "sprite %q not found", name)
		return
	}
	f.destroy(sp)
	w.WriteHeader(http.StatusNoContent)
}

func (f *Fake) list(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "list"); !ok {
		return
	}
	q := r.URL.Query()
	limit := 50
	if s := q.Get("max_results"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			apiError(w, http.StatusBadRequest, "invalid_request", "invalid max_results %q", s)
			return
		}
		limit = min(n, 1000)
	}
	after := ""
	if tok := q.Get("continuation_token"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			apiError(w, http.StatusBadRequest, "invalid_request", "invalid continuation_token")
			return
		}
		after = string(b)
	}
	prefix := q.Get("prefix")
	f.mu.Lock()
	var names []string
	counts := map[string]int{}
	for n, sp := range f.sprites {
		counts[sp.status]++
		if strings.HasPrefix(n, prefix) && n > after {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	more := len(names) > limit
	if more {
		names = names[:limit]
	}
	objs := make([]map[string]any, 0, len(names))
	for _, n := range names {
		objs = append(objs, f.spriteJSON(f.sprites[n]))
	}
	f.mu.Unlock()
	next := ""
	if more {
		next = base64.RawURLEncoding.EncodeToString([]byte(names[len(names)-1]))
	}
	limitSprites := f.opts.MaxSprites
	if limitSprites == 0 {
		limitSprites = 100
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sprites": objs, "has_more": more, "next_continuation_token": next,
		"running": counts["running"], "warm": counts["warm"], "cold": counts["cold"],
		"name": "fake-org", "running_limit": limitSprites, "warm_limit": limitSprites,
	})
}

func cloneRules(rules []map[string]any) []map[string]any {
	out := make([]map[string]any, len(rules))
	for i, r := range rules {
		out[i] = make(map[string]any, len(r))
		for k, v := range r {
			out[i][k] = v
		}
	}
	return out
}

func (f *Fake) getPolicy(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "policy"); !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	f.mu.Lock()
	rules := []map[string]any{}
	if sp.policy != nil {
		rules = cloneRules(sp.policy)
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules})
}

// postPolicy records a network policy; the fake does not enforce it.
func (f *Fake) postPolicy(w http.ResponseWriter, r *http.Request) {
	if ok, _ := f.begin(w, "policy"); !ok {
		return
	}
	sp := f.lookup(w, r)
	if sp == nil {
		return
	}
	var body struct {
		Rules []map[string]any `json:"rules"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_policy", "invalid JSON body: %v", err)
		return
	}
	if body.Rules == nil {
		apiError(w, http.StatusBadRequest, "invalid_policy", "rules is required")
		return
	}
	for i, rule := range body.Rules {
		if err := checkRule(rule); err != nil {
			apiError(w, http.StatusBadRequest, "invalid_policy", "rule %d: %v", i, err)
			return
		}
	}
	f.mu.Lock()
	sp.policy = cloneRules(body.Rules)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// checkRule accepts {"domain": "x", "action": "allow"|"deny"} or
// {"include": "<name>"}.
func checkRule(rule map[string]any) error {
	str := func(k string) (string, bool) {
		v, ok := rule[k]
		if !ok {
			return "", false
		}
		s, _ := v.(string)
		return s, true
	}
	if inc, ok := str("include"); ok {
		if inc == "" {
			return fmt.Errorf("include must be a non-empty string")
		}
		if _, d := rule["domain"]; d {
			return fmt.Errorf("a rule has either include or domain")
		}
		return nil
	}
	domain, _ := str("domain")
	if domain == "" {
		return fmt.Errorf("domain must be a non-empty string")
	}
	switch action, _ := str("action"); action {
	case "allow", "deny":
		return nil
	default:
		return fmt.Errorf("action must be allow or deny, not %q", action)
	}
}
