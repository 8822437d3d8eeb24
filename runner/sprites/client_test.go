package sprites

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"
)

// testConfig has timings short enough for tests.
func testConfig(url string) Config {
	return Config{
		URL:             url,
		Token:           "tok",
		CallTimeout:     2 * time.Second,
		RetryBaseDelay:  10 * time.Millisecond,
		RetryMaxDelay:   time.Second,
		PingInterval:    30 * time.Millisecond,
		DeadAfter:       300 * time.Millisecond,
		SessionInfoWait: 300 * time.Millisecond,
	}
}

// serve starts h and returns a client for it with testConfig, adjusted by
// mod when given.
func serve(t *testing.T, h http.HandlerFunc, mod ...func(*Config)) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := testConfig(srv.URL)
	for _, m := range mod {
		m(&cfg)
	}
	return New(cfg)
}

// counter counts requests by "METHOD path".
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(r *http.Request) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	k := r.Method + " " + r.URL.Path
	c.n[k]++
	return c.n[k]
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"30", 30 * time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"1.5", 0},
		{"abc", 0},
		{"999999999", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			is := is.New(t)
			is.Equal(parseRetryAfter(tc.in, now), tc.want) // Retry-After value
		})
	}
}

func TestErrorBodies(t *testing.T) {
	for _, tc := range []struct {
		name             string
		status           int
		header, body     string
		code, msg        string
		retryAfter       time.Duration
		notFound, noFile bool
	}{
		{name: "lifecycle json", status: 429, header: "30",
			body: `{"error":"sprite_creation_rate_limited","message":"slow down","retry_after_seconds":12}`,
			code: "sprite_creation_rate_limited", msg: "slow down", retryAfter: 12 * time.Second},
		{name: "header only", status: 429, header: "3",
			body: `{"error":"concurrent_sprite_limit_exceeded"}`,
			code: "concurrent_sprite_limit_exceeded", retryAfter: 3 * time.Second},
		{name: "fs json", status: 404, body: `{"error":"no such file","code":"ENOENT","path":"/x"}`,
			code: "ENOENT", msg: "no such file", notFound: true, noFile: true},
		{name: "plain text", status: 400, body: "bad things\n", msg: "bad things"},
		{name: "empty", status: 502, msg: "Bad Gateway"},
		{name: "plain 404", status: 404, body: "sprite not found", msg: "sprite not found", notFound: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("Retry-After", tc.header)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}, func(c *Config) { c.MaxAttempts = 1 })
			_, err := c.Get(context.Background(), "s")
			var e *APIError
			is.True(errors.As(err, &e))                         // an APIError
			is.Equal(e.Status, tc.status)                       // status
			is.Equal(e.Code, tc.code)                           // code
			is.Equal(e.Message, tc.msg)                         // message
			is.Equal(e.RetryAfter, tc.retryAfter)               // retry after
			is.Equal(IsNotFound(err), tc.notFound)              // IsNotFound
			is.Equal(errors.Is(err, fs.ErrNotExist), tc.noFile) // fs.ErrNotExist only for ENOENT
			ra, ok := Capacity(err)
			is.Equal(ok, tc.status == 429)                              // Capacity for 429 only
			is.Equal(ra, tc.retryAfter)                                 // Capacity's wait
			is.True(strings.Contains(err.Error(), "GET /v1/sprites/s")) // error names the call
		})
	}
}

func TestAuthAndEscaping(t *testing.T) {
	is := is.New(t)
	var got []string
	var mu sync.Mutex
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.EscapedPath()+"?"+r.URL.RawQuery+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		switch {
		case r.Method == http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			if string(b) != "data" || r.Header.Get("Content-Type") != "application/octet-stream" {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(200)
		case strings.HasSuffix(r.URL.Path, "/fs/read"):
			io.WriteString(w, "content")
		default:
			writeJSON(w, 200, map[string]any{"name": "a b/c", "id": 17, "created_at": "2026-01-02T03:04:05Z"})
		}
	})
	ctx := context.Background()
	s, err := c.Get(ctx, "a b/c")
	is.NoErr(err)                                                                      // get
	is.Equal(s.ID, "17")                                                               // numeric id read as a string
	is.Equal(s.CreatedAt, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))                 // created_at
	is.NoErr(c.WriteFile(ctx, "a b/c", "/home/sprite/x y.txt", []byte("data"), 0o640)) // write
	b, err := c.ReadFile(ctx, "a b/c", "/tmp/f&g")
	is.NoErr(err)                                                                                                                                // read
	is.Equal(string(b), "content")                                                                                                               // read content
	is.Equal(got[0], "GET /v1/sprites/a%20b%2Fc? Bearer tok")                                                                                    // name escaped, bearer sent
	is.Equal(got[1], "PUT /v1/sprites/a%20b%2Fc/fs/write?mkdirParents=true&mode=0640&path=%2Fhome%2Fsprite%2Fx+y.txt&workingDir=%2F Bearer tok") // write query
	is.Equal(got[2], "GET /v1/sprites/a%20b%2Fc/fs/read?path=%2Ftmp%2Ff%26g&workingDir=%2F Bearer tok")                                          // read query
	err = c.WriteFile(ctx, "s", "relative/path", nil, 0o644)
	is.True(err != nil) // relative paths refused
}

func TestGetRetries5xx(t *testing.T) {
	is := is.New(t)
	var n atomic.Int32
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			writeJSON(w, 503, map[string]any{"error": "busy", "retry_after_seconds": 0.2})
		case 2:
			w.WriteHeader(502)
		default:
			writeJSON(w, 200, map[string]any{"name": "s", "status": "running"})
		}
	})
	start := time.Now()
	s, err := c.Get(context.Background(), "s")
	is.NoErr(err)                                      // succeeds on the third try
	is.Equal(s.Status, "running")                      // the sprite
	is.Equal(n.Load(), int32(3))                       // three requests
	is.True(time.Since(start) >= 200*time.Millisecond) // retry_after_seconds honoured
}

func TestRetryBounds(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		is := is.New(t)
		var n atomic.Int32
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(500)
		}, func(c *Config) { c.MaxAttempts = 3 })
		_, err := c.Get(context.Background(), "s")
		var e *APIError
		is.True(errors.As(err, &e))  // the last answer is returned
		is.Equal(e.Status, 500)      // its status
		is.Equal(n.Load(), int32(3)) // MaxAttempts requests
	})
	t.Run("long retry-after", func(t *testing.T) {
		is := is.New(t)
		var n atomic.Int32
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(503)
		})
		_, err := c.Get(context.Background(), "s")
		var e *APIError
		is.True(errors.As(err, &e))            // returned
		is.Equal(e.RetryAfter, 60*time.Second) // with the server's wait
		is.Equal(n.Load(), int32(1))           // a wait over RetryMaxDelay is not slept
	})
	t.Run("not retried", func(t *testing.T) {
		for _, status := range []int{400, 401, 403, 404, 409, 501} {
			is := is.New(t)
			var n atomic.Int32
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.WriteHeader(status)
			})
			_, err := c.Get(context.Background(), "s")
			is.True(err != nil)          // an error
			is.Equal(n.Load(), int32(1)) // 4xx and 501 are not retried
		}
	})
	t.Run("ctx ends the waits", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(503)
		}, func(c *Config) { c.RetryBaseDelay = 800 * time.Millisecond; c.RetryMaxDelay = 5 * time.Second })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Get(ctx, "s")
		is.True(err != nil)                               // an error
		is.True(time.Since(start) < 500*time.Millisecond) // no sleep past ctx's deadline
	})
}

func TestNonIdempotentNotRetried(t *testing.T) {
	is := is.New(t)
	var cnt counter
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		cnt.add(r)
		w.WriteHeader(503)
	})
	err := c.Kill(context.Background(), "s", 3, "TERM", 0)
	is.True(err != nil)                                    // an error
	is.Equal(cnt.get("POST /v1/sprites/s/exec/3/kill"), 1) // a kill is sent once
}

func TestCreate(t *testing.T) {
	t.Run("429 returned at once", func(t *testing.T) {
		is := is.New(t)
		var cnt counter
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			cnt.add(r)
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 429, map[string]any{"error": "concurrent_sprite_limit_exceeded", "message": "too many"})
		})
		_, err := c.Create(context.Background(), "s")
		ra, ok := Capacity(err)
		is.True(ok)                              // a capacity error
		is.Equal(ra, time.Second)                // its Retry-After
		is.Equal(cnt.get("POST /v1/sprites"), 1) // not retried
	})
	t.Run("5xx then get then post", func(t *testing.T) {
		is := is.New(t)
		var cnt counter
		var body map[string]any
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			n := cnt.add(r)
			switch {
			case r.Method == http.MethodPost && n == 1:
				w.WriteHeader(500)
			case r.Method == http.MethodPost:
				json.NewDecoder(r.Body).Decode(&body)
				writeJSON(w, 201, map[string]any{"name": "s", "id": "x1", "status": "cold"})
			default:
				w.WriteHeader(404)
			}
		})
		s, err := c.Create(context.Background(), "s")
		is.NoErr(err)                             // created on the second try
		is.Equal(s.ID, "x1")                      // the sprite
		is.Equal(body["name"], "s")               // body has the name
		is.Equal(cnt.get("POST /v1/sprites"), 2)  // posted twice
		is.Equal(cnt.get("GET /v1/sprites/s"), 1) // looked up between
	})
	t.Run("dropped after creating", func(t *testing.T) {
		is := is.New(t)
		var cnt counter
		var created atomic.Bool
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			cnt.add(r)
			switch r.Method {
			case http.MethodPost:
				created.Store(true)
				// The sprite exists but the answer is lost.
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			default:
				if created.Load() {
					writeJSON(w, 200, map[string]any{"name": "s", "id": "x2"})
					return
				}
				w.WriteHeader(404)
			}
		})
		s, err := c.Create(context.Background(), "s")
		is.NoErr(err)                            // found by the retry
		is.Equal(s.ID, "x2")                     // the sprite created by the first try
		is.Equal(cnt.get("POST /v1/sprites"), 1) // not posted again
	})
	t.Run("409 on first try", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 409, map[string]any{"error": "already_exists"})
		})
		_, err := c.Create(context.Background(), "s")
		is.True(IsExists(err)) // a conflict is the caller's to judge
	})
}

func TestBodiesBounded(t *testing.T) {
	t.Run("json answer", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			io.WriteString(w, `{"name":"`)
			io.Copy(w, io.LimitReader(zeros{}, maxJSONBody+10))
			io.WriteString(w, `"}`)
		})
		_, err := c.Get(context.Background(), "s")
		is.True(err != nil)                                   // refused
		is.True(strings.Contains(err.Error(), "larger than")) // because of its size
	})
	t.Run("error body", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			io.Copy(w, io.LimitReader(zeros{}, 1<<20))
		})
		_, err := c.Get(context.Background(), "s")
		var e *APIError
		is.True(errors.As(err, &e))             // an APIError
		is.True(len(e.Message) <= maxErrorBody) // message truncated
		is.True(len(e.Message) > 1000)          // but kept
	})
	t.Run("file", func(t *testing.T) {
		is := is.New(t)
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte("x"), 2048))
		}, func(c *Config) { c.MaxFileSize = 1024 })
		_, err := c.ReadFile(context.Background(), "s", "/f")
		is.True(err != nil) // over MaxFileSize
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestDeadline(t *testing.T) {
	is := is.New(t)
	var n atomic.Int32
	release := make(chan struct{})
	defer close(release)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(c *Config) { c.CallTimeout = 150 * time.Millisecond })
	start := time.Now()
	_, err := c.Get(context.Background(), "s")
	is.True(err != nil)                             // timed out
	is.True(time.Since(start) < time.Second)        // at CallTimeout
	is.Equal(n.Load(), int32(1))                    // a timeout is not retried
	is.True(strings.Contains(err.Error(), "150ms")) // the error says why
}

func TestOpenFileStall(t *testing.T) {
	is := is.New(t)
	release := make(chan struct{})
	defer close(release)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, func(c *Config) { c.CallTimeout = 200 * time.Millisecond })
	rc, err := c.OpenFile(context.Background(), "s", "/f")
	is.NoErr(err) // opened
	defer rc.Close()
	time.Sleep(300 * time.Millisecond) // time between reads does not count
	buf := make([]byte, 5)
	_, err = io.ReadFull(rc, buf)
	is.NoErr(err)                  // the first bytes
	is.Equal(string(buf), "first") // content
	start := time.Now()
	_, err = rc.Read(buf)
	is.True(err != nil)                               // the stalled read ends
	is.True(time.Since(start) < time.Second)          // after the idle limit
	is.True(strings.Contains(err.Error(), "stalled")) // and says so
}

func TestNotFoundMapping(t *testing.T) {
	is := is.New(t)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/kill"):
			w.WriteHeader(http.StatusGone)
		case strings.Contains(r.URL.Path, "/fs/"):
			writeJSON(w, 404, map[string]any{"error": "no such file or directory", "code": "ENOENT"})
		default:
			writeJSON(w, 404, map[string]any{"error": "not_found", "message": "sprite not found"})
		}
	})
	ctx := context.Background()
	_, err := c.Get(ctx, "s")
	is.True(IsNotFound(err))                 // get 404
	is.NoErr(c.Delete(ctx, "s"))             // delete 404 is success
	is.NoErr(c.Remove(ctx, "s", "/x", true)) // removing a missing path is success
	_, err = c.ReadFile(ctx, "s", "/x")
	is.True(errors.Is(err, fs.ErrNotExist)) // ENOENT
	var pe *fs.PathError
	is.True(errors.As(err, &pe)) // a PathError
	is.Equal(pe.Path, "/x")      // naming the path
	_, err = c.ListDir(ctx, "s", "/x", false)
	is.True(errors.Is(err, fs.ErrNotExist))  // list ENOENT
	is.NoErr(c.Kill(ctx, "s", 1, "TERM", 0)) // 410 Gone is success
}

func TestListPaging(t *testing.T) {
	is := is.New(t)
	var queries []string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		switch r.URL.Query().Get("continuation_token") {
		case "":
			writeJSON(w, 200, map[string]any{"sprites": []any{map[string]any{"name": "aod-1"}, map[string]any{"name": "aod-2"}},
				"has_more": true, "next_continuation_token": "t1"})
		case "t1":
			writeJSON(w, 200, map[string]any{"sprites": []any{map[string]any{"name": "aod-3"}, map[string]any{"name": "other"}},
				"has_more": true, "next_continuation_token": "t2"})
		default:
			writeJSON(w, 200, map[string]any{"sprites": []any{}, "has_more": false})
		}
	})
	list, err := c.List(context.Background(), "aod-")
	is.NoErr(err) // listed
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	is.Equal(names, []string{"aod-1", "aod-2", "aod-3"})                      // all pages, prefix filtered
	is.Equal(queries[0], "max_results=100&prefix=aod-")                       // first page
	is.Equal(queries[1], "continuation_token=t1&max_results=100&prefix=aod-") // second page

	loop := serve(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"sprites": []any{}, "has_more": true, "next_continuation_token": "same"})
	})
	_, err = loop.List(context.Background(), "")
	is.True(err != nil) // a repeated token ends the loop
}

func TestPolicy(t *testing.T) {
	is := is.New(t)
	var body string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/sprites/s/policy/network" {
			w.WriteHeader(400)
			return
		}
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.WriteHeader(204)
	})
	err := c.SetNetworkPolicy(context.Background(), "s", []PolicyRule{
		{Domain: "api.anthropic.com", Action: "allow"}, {Include: "defaults"}, {Domain: "*", Action: "deny"}})
	is.NoErr(err)                                                                                                                       // 204
	is.Equal(body, `{"rules":[{"domain":"api.anthropic.com","action":"allow"},{"include":"defaults"},{"domain":"*","action":"deny"}]}`) // wire form
	err = c.SetNetworkPolicy(context.Background(), "s", []PolicyRule{{Domain: "x"}})
	is.True(err != nil) // a rule without an action is refused
}

func TestChmodAndList(t *testing.T) {
	is := is.New(t)
	var chmod map[string]any
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sprites/s/fs/chmod":
			json.NewDecoder(r.Body).Decode(&chmod)
			w.WriteHeader(200)
		case "/v1/sprites/s/fs/list":
			writeJSON(w, 200, map[string]any{"path": "/d", "count": 2, "entries": []any{
				map[string]any{"name": "a", "path": "/d/a", "type": "file", "size": 3, "mode": "0755", "modTime": "2026-01-01T00:00:00Z", "isDir": false},
				map[string]any{"name": "b", "path": "/d/b", "type": "directory", "mode": "0700", "isDir": true},
			}})
		}
	})
	ctx := context.Background()
	is.NoErr(c.Chmod(ctx, "s", "/d/a", 0o755, true)) // chmod
	is.Equal(chmod["mode"], "0755")                  // octal string
	is.Equal(chmod["recursive"], true)               // recursive
	is.Equal(chmod["path"], "/d/a")                  // path
	list, err := c.ListDir(ctx, "s", "/d", false)
	is.NoErr(err)                              // list
	is.Equal(len(list), 2)                     // two entries
	is.Equal(list[0].Mode, fs.FileMode(0o755)) // mode parsed
	is.Equal(list[0].Size, int64(3))           // size
	is.Equal(list[1].Mode, fs.ModeDir|0o700)   // directory mode
	is.True(list[1].IsDir)                     // isDir
	is.Equal(list[0].ModTime.Year(), 2026)     // modTime
}

func TestConnectionRefusedRetried(t *testing.T) {
	is := is.New(t)
	// Reserve a port, then close it so connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err) // listen
	addr := l.Addr().String()
	l.Close()
	c := New(Config{URL: "http://" + addr, Token: "t", MaxAttempts: 3, RetryBaseDelay: 5 * time.Millisecond})
	var attempts atomic.Int32
	c.http = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	err = c.Kill(context.Background(), "s", 1, "TERM", 0)
	is.True(err != nil)                 // still refused
	is.Equal(attempts.Load(), int32(3)) // a refused kill never reached the server: retried
	attempts.Store(0)
	_, err = c.Exec(context.Background(), "s", ExecOptions{Argv: []string{"x"}})
	is.True(err != nil)                 // still refused
	is.Equal(attempts.Load(), int32(3)) // a refused handshake started nothing: retried
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestFlexTypes(t *testing.T) {
	is := is.New(t)
	var v struct {
		A, B, C, D flexTime
		N, M       flexInt
	}
	err := json.Unmarshal([]byte(`{"A":"2026-01-02T03:04:05.5Z","B":1767323045,"C":1767323045500,"D":"junk","N":"42","M":7}`), &v)
	is.NoErr(err)                                                           // parsed
	is.Equal(time.Time(v.A), time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)) // RFC 3339
	is.Equal(time.Time(v.B).Unix(), int64(1767323045))                      // seconds
	is.Equal(time.Time(v.C).UnixMilli(), int64(1767323045500))              // milliseconds
	is.True(time.Time(v.D).IsZero())                                        // junk is zero
	is.Equal(v.N, flexInt(42))                                              // numeric string
	is.Equal(v.M, flexInt(7))                                               // number
	is.Equal(modeString(0o755|fs.ModeSetuid), "4755")                       // setuid
	is.Equal(parseMode("0o1777"), fs.ModeSticky|0o777)                      // sticky
}
