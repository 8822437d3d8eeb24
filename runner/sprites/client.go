// Package sprites is a client for the Fly.io Sprites API (spec/runner.md
// §6): sprite lifecycle, network policy, the filesystem endpoints and
// non-TTY exec over WebSocket. It speaks the wire protocol itself, bounds
// everything a server sends, puts a deadline on every call and retries only
// what is safe to repeat.
package sprites

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	DefaultURL            = "https://api.sprites.dev"
	DefaultCallTimeout    = 30 * time.Second
	DefaultCreateTimeout  = 2 * time.Minute
	DefaultMaxAttempts    = 5
	DefaultRetryBaseDelay = 250 * time.Millisecond
	DefaultRetryMaxDelay  = 10 * time.Second
	DefaultPingInterval   = 15 * time.Second
	DefaultDeadAfter      = 45 * time.Second
	DefaultSessionInfo    = 2 * time.Second
	DefaultMaxFileSize    = 64 << 20
)

// Size bounds on what a server may make the client hold in memory.
const (
	// MaxFrameSize is the largest WebSocket message accepted from the
	// server; a larger one ends the exec with ErrFrameTooLarge.
	MaxFrameSize = 1 << 20
	// maxErrorBody is how much of an error response is read; the rest is
	// dropped.
	maxErrorBody = 64 << 10
	// maxJSONBody is the largest JSON answer accepted (a page of sprites,
	// a directory listing); larger ones are refused.
	maxJSONBody = 8 << 20
	// maxLine bounds one NDJSON line of the kill endpoint's progress.
	maxLine = 64 << 10
	// stdinPayload keeps a stdin frame (stream byte + payload) within
	// 32 KiB, the default read limit of common WebSocket servers.
	stdinPayload = 32<<10 - 1
	// outputChunk is the largest write handed to an output writer.
	outputChunk = 32 << 10
)

// Config configures a Client. Only Token is required.
type Config struct {
	// URL is the API base, default DefaultURL; requests go to URL/v1/….
	URL string
	// Token is the bearer token sent on every HTTP and WebSocket request.
	Token string
	// HTTP is the client requests are made with; default a new one with
	// no overall timeout (deadlines come from CallTimeout and contexts).
	HTTP *http.Client
	// Log receives retries and dropped sockets at debug level; default
	// discards.
	Log *slog.Logger

	// CallTimeout is the deadline of each HTTP attempt (and of an exec
	// handshake) whose context has none shorter; default 30s.
	CallTimeout time.Duration
	// CreateTimeout replaces CallTimeout for the POST that creates a
	// sprite, which boots a VM; default 2m.
	CreateTimeout time.Duration

	// MaxAttempts bounds the attempts of a call that may be retried
	// (first try included); default 5. 1 disables retries.
	MaxAttempts int
	// RetryBaseDelay is the first backoff; each later one doubles, with
	// jitter; default 250ms.
	RetryBaseDelay time.Duration
	// RetryMaxDelay caps one backoff. A Retry-After longer than this ends
	// the retries and the error is returned with its RetryAfter; default 10s.
	RetryMaxDelay time.Duration

	// PingInterval is how often an exec socket is pinged; default 15s.
	PingInterval time.Duration
	// DeadAfter is how long an exec socket may stay silent (no message, no
	// pong) while the client waits on it before it is treated as dropped;
	// default 45s.
	DeadAfter time.Duration
	// SessionInfoWait is how long Exec waits for the server's session_info
	// message before returning without one; default 2s.
	SessionInfoWait time.Duration
	// MaxFileSize bounds ReadFile; default 64 MiB. OpenFile has no bound.
	MaxFileSize int64
	// ListPageSize is how many sprites one List request asks for;
	// default 100.
	ListPageSize int
}

// Client talks to one Sprites API with one token. It is safe for
// concurrent use.
type Client struct {
	base *url.URL
	cfg  Config
	http *http.Client
	log  *slog.Logger
}

// New returns a client for c. A malformed URL surfaces as an error on the
// first call.
func New(c Config) *Client {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.CreateTimeout <= 0 {
		c.CreateTimeout = DefaultCreateTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBaseDelay <= 0 {
		c.RetryBaseDelay = DefaultRetryBaseDelay
	}
	if c.RetryMaxDelay <= 0 {
		c.RetryMaxDelay = DefaultRetryMaxDelay
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = DefaultDeadAfter
	}
	if c.SessionInfoWait <= 0 {
		c.SessionInfoWait = DefaultSessionInfo
	}
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = DefaultMaxFileSize
	}
	if c.ListPageSize <= 0 {
		c.ListPageSize = 100
	}
	base, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		base = nil
	}
	return &Client{base: base, cfg: c, http: c.HTTP, log: c.Log}
}

// APIError is an answer of status 400 or more.
type APIError struct {
	// Op is the request, "GET /v1/sprites/x".
	Op     string
	Status int
	// Code is the machine-readable code: the JSON "error" of lifecycle
	// calls (sprite_creation_rate_limited…) or the JSON "code" of
	// filesystem calls (ENOENT…).
	Code    string
	Message string
	// RetryAfter is from retry_after_seconds or the Retry-After header.
	RetryAfter time.Duration

	fs bool // a filesystem call: a 404 means the path is missing
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("sprites: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%d", e.Status)
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" && e.Message != e.Code {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is lets errors.Is match the io/fs sentinels for filesystem answers.
func (e *APIError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Code == "ENOENT" || (e.fs && e.Status == http.StatusNotFound && e.Code == "")
	case fs.ErrExist:
		return e.Code == "EEXIST"
	case fs.ErrPermission:
		return e.Code == "EACCES" || e.Code == "EPERM"
	}
	return false
}

// IsNotFound reports whether err is a 404 answer (a missing sprite, exec
// session or file) or a filesystem ENOENT.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Code == "ENOENT")
}

// IsExists reports whether err is a 409 answer (a sprite of that name
// exists already).
func IsExists(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusConflict
}

// Capacity reports whether err is the API refusing for lack of capacity
// (429: sprite_creation_rate_limited, concurrent_sprite_limit_exceeded or
// any other), and how long it asked the caller to wait (0 when it did not
// say).
func Capacity(err error) (retryAfter time.Duration, ok bool) {
	var e *APIError
	if errors.As(err, &e) && e.Status == http.StatusTooManyRequests {
		return e.RetryAfter, true
	}
	return 0, false
}

// errorBody covers both error shapes: lifecycle {"error": code, "message"}
// and filesystem {"error": message, "code", "path"}.
type errorBody struct {
	Error      string   `json:"error"`
	Message    string   `json:"message"`
	Code       string   `json:"code"`
	RetryAfter *float64 `json:"retry_after_seconds"`
}

// apiError reads at most maxErrorBody of resp's body into an APIError.
func apiError(op string, resp *http.Response, fsCall bool) *APIError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Op: op, Status: resp.StatusCode, fs: fsCall}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	var b errorBody
	if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &b) == nil {
		if b.Code != "" {
			e.Code, e.Message = b.Code, b.Error
		} else {
			e.Code, e.Message = b.Error, b.Message
		}
		if b.RetryAfter != nil && *b.RetryAfter > 0 && *b.RetryAfter < 1e6 {
			e.RetryAfter = time.Duration(*b.RetryAfter * float64(time.Second))
		}
	} else {
		e.Message = strings.TrimSpace(strings.ToValidUTF8(string(raw), "\uFFFD"))
	}
	if e.Message == "" && e.Code == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. Anything else, negative or absurd, is 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && fmt.Sprint(secs) == v {
		if secs <= 0 || secs > 86400 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 && d <= 24*time.Hour {
			return d.Round(time.Second)
		}
	}
	return 0
}

// retryPolicy says which failures of a call may be repeated.
type retryPolicy int

const (
	// retryNever: the request may have had an effect; any failure is
	// returned.
	retryNever retryPolicy = iota
	// retryRefused: repeated only when the request never reached the
	// server (connection refused).
	retryRefused
	// retryHandshake: an exec handshake, repeated when the connection was
	// refused or the server answered 5xx instead of upgrading: either way
	// no command started.
	retryHandshake
	// retrySafe: repeating has the same effect as doing it once; 5xx,
	// 429 and dropped connections are retried.
	retrySafe
)

// request is one API call.
type request struct {
	method string
	path   string // escaped, from /v1
	query  url.Values
	body   []byte
	ctype  string
	accept string
	retry  retryPolicy
	// timeout replaces CallTimeout when set.
	timeout time.Duration
	// fs marks filesystem calls for the error mapping.
	fs bool
}

func (r *request) op() string { return r.method + " " + r.path }

// endpoint returns the absolute URL of path (escaped, from /v1) and query.
func (c *Client) endpoint(path string, q url.Values) (string, error) {
	if c.base == nil {
		return "", fmt.Errorf("sprites: bad API URL %q", c.cfg.URL)
	}
	s := strings.TrimRight(c.base.String(), "/") + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s, nil
}

// spritePath is /v1/sprites/{name} with the name escaped, plus rest.
func spritePath(name, rest string) string {
	return "/v1/sprites/" + url.PathEscape(name) + rest
}

// attempt makes one try of r. On success the caller reads the body and
// then calls the returned cancel; on failure everything is released.
func (c *Client) attempt(ctx context.Context, r *request) (*http.Response, context.CancelFunc, error) {
	u, err := c.endpoint(r.path, r.query)
	if err != nil {
		return nil, nil, err
	}
	timeout := c.cfg.CallTimeout
	if r.timeout != 0 {
		timeout = r.timeout
	}
	var actx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, timeout)
	} else {
		// The caller bounds this attempt itself (a streamed answer).
		actx, cancel = context.WithCancel(ctx)
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, u, body)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	c.authorize(req.Header)
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	} else {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		if ctx.Err() == nil && actx.Err() != nil {
			err = fmt.Errorf("%w (no answer within %s)", err, timeout)
		}
		return nil, nil, fmt.Errorf("sprites: %s: %w", r.op(), err)
	}
	if resp.StatusCode >= 400 {
		e := apiError(r.op(), resp, r.fs)
		resp.Body.Close()
		cancel()
		return nil, nil, e
	}
	return resp, cancel, nil
}

func (c *Client) authorize(h http.Header) {
	h.Set("Authorization", "Bearer "+c.cfg.Token)
	h.Set("User-Agent", "aod-sprites/1")
}

// send makes r, retrying as its policy allows. On success the caller
// reads the body and then calls cancel.
func (c *Client) send(ctx context.Context, r *request) (*http.Response, context.CancelFunc, error) {
	for n := 1; ; n++ {
		resp, cancel, err := c.attempt(ctx, r)
		if err == nil {
			return resp, cancel, nil
		}
		delay, ok := c.retryable(ctx, r.retry, n, err)
		if !ok {
			return nil, nil, err
		}
		c.log.Debug("sprites: retrying", "op", r.op(), "attempt", n, "delay", delay, "err", err)
		if err := sleep(ctx, delay); err != nil {
			return nil, nil, err
		}
	}
}

// retryable decides whether attempt n, which failed with err, is tried
// again under policy p, and after what delay.
func (c *Client) retryable(ctx context.Context, p retryPolicy, n int, err error) (time.Duration, bool) {
	if p == retryNever || n >= c.cfg.MaxAttempts || ctx.Err() != nil {
		return 0, false
	}
	var retryAfter time.Duration
	var e *APIError
	switch {
	case errors.As(err, &e):
		switch {
		case p == retrySafe && retryStatus(e.Status):
		case p == retryHandshake && e.Status >= 500 && retryStatus(e.Status):
		default:
			return 0, false
		}
		retryAfter = e.RetryAfter
	case refused(err):
	case p == retrySafe && transient(err):
	default:
		return 0, false
	}
	d := c.backoff(n)
	if retryAfter > 0 {
		d = retryAfter
	}
	if d > c.cfg.RetryMaxDelay {
		return 0, false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return 0, false
	}
	return d, true
}

// retryStatus lists the answers worth a second try: overload and gateway
// trouble. 501 and other 5xx say the request itself is wrong.
func retryStatus(s int) bool {
	switch s {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// backoff is the delay after failed attempt n: base·2^(n-1), capped,
// with "equal jitter" (half fixed, half random) so clients spread out.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.RetryBaseDelay << (n - 1)
	if d <= 0 || d > c.cfg.RetryMaxDelay {
		d = c.cfg.RetryMaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// refused reports a request that never reached the server.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// transient reports a dropped or reset connection: the request may or may
// not have been handled. A timeout of the attempt is not transient: the
// server held the request for the whole deadline.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "server closed idle connection") ||
		strings.Contains(err.Error(), "connection reset")
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// doJSON makes r and decodes a JSON answer into out (nil: the body is
// discarded). Answers over maxJSONBody are refused.
func (c *Client) doJSON(ctx context.Context, r *request, out any) error {
	resp, cancel, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONBody+1))
	if err != nil {
		return fmt.Errorf("sprites: %s: reading the answer: %w", r.op(), err)
	}
	if len(raw) > maxJSONBody {
		return fmt.Errorf("sprites: %s: answer larger than %d bytes", r.op(), maxJSONBody)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("sprites: %s: bad answer: %w", r.op(), err)
	}
	return nil
}

func jsonBody(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own request types are marshalled
	}
	return b
}
