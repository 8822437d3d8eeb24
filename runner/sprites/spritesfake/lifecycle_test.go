package spritesfake_test

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/coder/websocket"
)

// Create, get, idempotent create, list with real paging, delete, 404s.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{})

	obj := mkSprite(t, f, "aod-1")
	for _, k := range []string{"id", "name", "status", "created_at", "updated_at", "url", "url_settings", "labels", "config", "organization"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("sprite object has no %q: %v", k, obj)
		}
	}
	if obj["name"] != "aod-1" || obj["status"] != "warm" {
		t.Errorf("new sprite %v, want name aod-1, status warm", obj)
	}
	if _, err := time.Parse(time.RFC3339, obj["created_at"].(string)); err != nil {
		t.Errorf("created_at: %v", err)
	}
	dir := f.SpriteDir("aod-1")
	for _, d := range []string{"home/sprite", "workspace", "tmp"} {
		if fi, err := os.Stat(dir + "/" + d); err != nil || !fi.IsDir() {
			t.Errorf("sprite dir has no %s: %v", d, err)
		}
	}

	// A name that exists: the existing sprite, 200.
	st, _, b := call(t, f, "POST", "/v1/sprites", map[string]any{"name": "aod-1"})
	wantStatus(t, "create again", st, http.StatusOK, b)
	if again := decode(t, b); again["id"] != obj["id"] {
		t.Errorf("create again gave id %v, want %v", again["id"], obj["id"])
	}
	st, _, b = call(t, f, "POST", "/v1/sprites", map[string]any{"config": map[string]any{"cpus": 2}})
	wantError(t, "create without name", st, b, http.StatusBadRequest, "invalid_request")

	st, _, b = call(t, f, "GET", "/v1/sprites/aod-1", nil)
	wantStatus(t, "get", st, http.StatusOK, b)
	if got := decode(t, b); got["id"] != obj["id"] {
		t.Errorf("get gave %v", got)
	}
	st, _, b = call(t, f, "GET", "/v1/sprites/nope", nil)
	wantError(t, "get missing", st, b, http.StatusNotFound, "not_found")

	// Paging: 5 with the prefix, 1 without, pages of 2.
	for i := 2; i <= 5; i++ {
		mkSprite(t, f, "aod-"+strconv.Itoa(i))
	}
	mkSprite(t, f, "other")
	var names []string
	var pages []int
	token := ""
	for range 10 {
		path := "/v1/sprites?prefix=aod-&max_results=2"
		if token != "" {
			path += "&continuation_token=" + token
		}
		st, _, b := call(t, f, "GET", path, nil)
		wantStatus(t, "list", st, http.StatusOK, b)
		m := decode(t, b)
		page := m["sprites"].([]any)
		pages = append(pages, len(page))
		for _, s := range page {
			names = append(names, s.(map[string]any)["name"].(string))
		}
		if m["has_more"] != true {
			if m["next_continuation_token"] != "" {
				t.Errorf("last page has a token: %v", m["next_continuation_token"])
			}
			if m["warm"] != float64(6) {
				t.Errorf("list counts warm %v, want 6", m["warm"])
			}
			break
		}
		token = m["next_continuation_token"].(string)
	}
	if want := []string{"aod-1", "aod-2", "aod-3", "aod-4", "aod-5"}; !slices.Equal(names, want) {
		t.Errorf("paged names %v, want %v", names, want)
	}
	if !slices.Equal(pages, []int{2, 2, 1}) {
		t.Errorf("page sizes %v, want [2 2 1]", pages)
	}
	st, _, b = call(t, f, "GET", "/v1/sprites?continuation_token=%21%21", nil)
	wantError(t, "bad token", st, b, http.StatusBadRequest, "invalid_request")

	st, _, b = call(t, f, "DELETE", "/v1/sprites/aod-1", nil)
	wantStatus(t, "delete", st, http.StatusNoContent, b)
	st, _, b = call(t, f, "GET", "/v1/sprites/aod-1", nil)
	wantError(t, "get deleted", st, b, http.StatusNotFound, "not_found")
	st, _, b = call(t, f, "DELETE", "/v1/sprites/aod-1", nil)
	wantError(t, "delete again", st, b, http.StatusNotFound, "not_found")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("deleted sprite's dir is still there: %v", err)
	}
	if got := f.Sprites(); !slices.Equal(got, []string{"aod-2", "aod-3", "aod-4", "aod-5", "other"}) {
		t.Errorf("Sprites() = %v", got)
	}
	f.Vanish("other")
	if f.SpriteDir("other") != "" {
		t.Errorf("vanished sprite still has a dir")
	}
	if n := f.Requests("create"); n != 8 {
		t.Errorf("Requests(create) = %d, want 8", n)
	}
	if n := f.Requests("delete"); n != 2 {
		t.Errorf("Requests(delete) = %d, want 2", n)
	}
}

// Every HTTP and WebSocket request needs the bearer token.
func TestAuth(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{Token: "secret"})
	mkSprite(t, f, "s")
	for _, tok := range []string{"", "wrong"} {
		st, _, b := callToken(t, f, tok, "GET", "/v1/sprites/s", nil)
		wantError(t, "get with token "+strconv.Quote(tok), st, b, http.StatusUnauthorized, "unauthorized")
		st, _, b = callToken(t, f, tok, "PUT", "/v1/sprites/s/fs/write?path=/tmp/x", "x")
		wantError(t, "fs write with token "+strconv.Quote(tok), st, b, http.StatusUnauthorized, "unauthorized")
	}
	ctx := t.Context()
	_, resp, err := websocket.Dial(ctx, wsURL(f, execPath("s", nil, "true")), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("exec without token: %v, %v; want 401", err, resp)
	}
	if f.Requests("get") != 0 || f.Requests("exec") != 0 {
		t.Errorf("unauthorised requests were served")
	}
}

// Faults: a 429 with Retry-After and the body, a 5xx once then service.
func TestFaults(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{})
	f.Inject(spritesfake.Fault{Op: "create", Status: 429, Code: "sprite_creation_rate_limited", RetryAfter: 1500 * time.Millisecond})
	st, h, b := call(t, f, "POST", "/v1/sprites", map[string]any{"name": "s"})
	m := wantError(t, "faulted create", st, b, http.StatusTooManyRequests, "sprite_creation_rate_limited")
	if h.Get("Retry-After") != "2" || m["retry_after_seconds"] != float64(2) {
		t.Errorf("Retry-After %q, retry_after_seconds %v; want 2 (1.5 s rounded up)", h.Get("Retry-After"), m["retry_after_seconds"])
	}
	mkSprite(t, f, "s")

	f.Inject(spritesfake.Fault{Op: "get", Status: 503})
	st, h, b = call(t, f, "GET", "/v1/sprites/s", nil)
	wantError(t, "faulted get", st, b, http.StatusServiceUnavailable, "service_unavailable")
	if h.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q without RetryAfter", h.Get("Retry-After"))
	}
	st, _, b = call(t, f, "GET", "/v1/sprites/s", nil)
	wantStatus(t, "get after the fault", st, http.StatusOK, b)

	f.Inject(spritesfake.Fault{Op: "fs.read", Status: 500, Times: 2})
	for i := range 2 {
		st, _, b = call(t, f, "GET", "/v1/sprites/s/fs/read?path=/tmp", nil)
		wantError(t, fmt.Sprint("faulted read ", i), st, b, http.StatusInternalServerError, "internal_error")
	}
	st, _, b = call(t, f, "GET", "/v1/sprites/s/fs/read?path=/nope", nil)
	wantStatus(t, "read after the faults", st, http.StatusNotFound, b)

	f.Inject(spritesfake.Fault{Op: "exec", Status: 502})
	_, resp, err := dial(t, f, execPath("s", nil, "true"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("faulted exec handshake: %v, %v; want 502", err, resp)
	}
	if got := [3]int{f.Requests("create"), f.Requests("get"), f.Requests("fs.read")}; got != [3]int{2, 2, 3} {
		t.Errorf("requests create, get, fs.read = %v, want [2 2 3]", got)
	}
}

// MaxSprites: the concurrent limit, cleared by a delete.
func TestMaxSprites(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{MaxSprites: 2})
	mkSprite(t, f, "a")
	mkSprite(t, f, "b")
	st, h, b := call(t, f, "POST", "/v1/sprites", map[string]any{"name": "c"})
	m := wantError(t, "third create", st, b, http.StatusTooManyRequests, "concurrent_sprite_limit_exceeded")
	if m["limit"] != float64(2) || m["current_count"] != float64(2) {
		t.Errorf("limit body %s", b)
	}
	if h.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q on the concurrent limit", h.Get("Retry-After"))
	}
	st, _, b = call(t, f, "POST", "/v1/sprites", map[string]any{"name": "a"})
	wantStatus(t, "create of an existing name at the limit", st, http.StatusOK, b)
	st, _, b = call(t, f, "DELETE", "/v1/sprites/a", nil)
	wantStatus(t, "delete", st, http.StatusNoContent, b)
	mkSprite(t, f, "c")
}

// CreateRate: creates per second, with Retry-After, then allowed again.
func TestCreateRate(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{CreateRate: 2})
	for try := 0; ; try++ {
		start := time.Now()
		mkSprite(t, f, fmt.Sprint("a", try))
		mkSprite(t, f, fmt.Sprint("b", try))
		st, h, b := call(t, f, "POST", "/v1/sprites", map[string]any{"name": fmt.Sprint("c", try)})
		if st != http.StatusTooManyRequests && time.Since(start) >= time.Second && try < 3 {
			continue // a slow machine: the three creates did not fit in one second
		}
		m := wantError(t, "third create in a second", st, b, http.StatusTooManyRequests, "sprite_creation_rate_limited")
		if h.Get("Retry-After") != "1" || m["retry_after_seconds"] != float64(1) || m["limit"] != float64(2) || m["window_seconds"] != float64(1) {
			t.Errorf("rate limit answer: Retry-After %q, body %s", h.Get("Retry-After"), b)
		}
		if h.Get("X-RateLimit-Limit") != "2" || h.Get("X-RateLimit-Remaining") != "0" {
			t.Errorf("X-RateLimit headers %v", h)
		}
		time.Sleep(time.Second)
		mkSprite(t, f, fmt.Sprint("c", try))
		return
	}
}

// CreateDelay makes create slow.
func TestCreateDelay(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{CreateDelay: 200 * time.Millisecond})
	start := time.Now()
	mkSprite(t, f, "slow")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("create took %s, want at least 200ms", d)
	}
}

// The network policy is recorded (204) and read back; invalid ones 400.
func TestPolicy(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{})
	mkSprite(t, f, "s")
	if f.Policy("s") != nil {
		t.Errorf("policy before any POST: %v", f.Policy("s"))
	}
	st, _, b := call(t, f, "GET", "/v1/sprites/s/policy/network", nil)
	wantStatus(t, "get empty policy", st, http.StatusOK, b)
	if got := decode(t, b)["rules"]; len(got.([]any)) != 0 {
		t.Errorf("empty policy rules %v", got)
	}
	rules := map[string]any{"rules": []any{
		map[string]any{"domain": "api.anthropic.com", "action": "allow"},
		map[string]any{"domain": "*", "action": "deny"},
		map[string]any{"include": "defaults"},
	}}
	st, _, b = call(t, f, "POST", "/v1/sprites/s/policy/network", rules)
	wantStatus(t, "post policy", st, http.StatusNoContent, b)
	got := f.Policy("s")
	if len(got) != 3 || got[0]["domain"] != "api.anthropic.com" || got[2]["include"] != "defaults" {
		t.Errorf("Policy() = %v", got)
	}
	st, _, b = call(t, f, "GET", "/v1/sprites/s/policy/network", nil)
	wantStatus(t, "get policy", st, http.StatusOK, b)
	if r := decode(t, b)["rules"].([]any); len(r) != 3 {
		t.Errorf("GET policy rules %v", r)
	}
	for _, bad := range []any{
		"not json",
		map[string]any{},
		map[string]any{"rules": []any{map[string]any{"domain": "x", "action": "maybe"}}},
		map[string]any{"rules": []any{map[string]any{"action": "allow"}}},
		map[string]any{"rules": []any{map[string]any{"include": ""}}},
	} {
		st, _, b = call(t, f, "POST", "/v1/sprites/s/policy/network", bad)
		wantError(t, fmt.Sprintf("post %v", bad), st, b, http.StatusBadRequest, "invalid_policy")
	}
	if len(f.Policy("s")) != 3 {
		t.Errorf("an invalid policy replaced the last one")
	}
	st, _, b = call(t, f, "POST", "/v1/sprites/nope/policy/network", rules)
	wantError(t, "policy of a missing sprite", st, b, http.StatusNotFound, "not_found")
}
