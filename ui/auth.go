package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// Cookie names and lifetimes.
const (
	sessionCookie = "aod_session"
	csrfCookie    = "aod_csrf"  // anonymous forms: a nonce whose HMAC the form carries
	flashCookie   = "aod_flash" // messages for the page after a redirect, signed
	csrfField     = "csrf_token"
	loginTTL      = 14 * 24 * time.Hour
)

// Login throttling: this many failures within the window, per client
// address or per username, refuse further attempts until they age out.
const (
	loginMaxFailures = 10
	loginWindow      = 15 * time.Minute
	tooManyAttempts  = "Too many login attempts. Try again later."
	// Sign-ups per client address.
	signupMax      = 10
	signupWindow   = time.Hour
	tooManySignups = "Too many accounts created from your address. Try again later."
)

var errBadForm = errors.New("malformed form")

// session is a logged-in request's login; token is the cookie value.
type session struct {
	*store.UISession
	token string
}

// secure reports whether cookies should be Secure: the request came over
// TLS, through a proxy that says so, or the operator forces it.
func (u *UI) secure(r *http.Request) bool {
	return u.cfg.Secure || r.TLS != nil || u.fromProxy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// peer is the request's direct peer address.
func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// trusted reports whether addr is one of the operator's proxies.
func (u *UI) trusted(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range u.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// fromProxy reports whether the request came through a trusted proxy,
// whose X-Forwarded-* headers are then believed.
func (u *UI) fromProxy(r *http.Request) bool { return u.trusted(peer(r)) }

func (u *UI) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: u.secure(r),
	})
}

// session returns the request's login, nil when there is none.
func (u *UI) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s, err := u.db.UISessionByToken(r.Context(), c.Value)
	if err != nil {
		if store.ErrorCode(err) != store.Unauthorized {
			u.log.Error("ui: read login", "err", err)
		}
		return nil
	}
	return &session{UISession: s, token: c.Value}
}

// authedHandle is a page handler; s is nil only on public pages.
type authedHandle func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error

// authed requires a login (else 302 to the login page) and, on POST, the
// login's CSRF token.
func (u *UI) authed(h authedHandle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		s := u.session(r)
		if s == nil {
			http.Redirect(w, r, loginURL(r), http.StatusFound)
			return
		}
		if r.Method == http.MethodPost {
			if err := parseForm(w, r); err != nil {
				u.fail(w, r, s, err)
				return
			}
			if !tokenEqual(r.PostForm.Get(csrfField), s.CSRF) {
				u.renderError(w, r, s, http.StatusForbidden)
				return
			}
		}
		if err := h(w, r, ps, s); err != nil {
			u.fail(w, r, s, err)
		}
	}
}

// public serves a page with or without a login. A POST needs the login's
// CSRF token or a valid anonymous one (a form rendered before the user
// logged in elsewhere).
func (u *UI) public(h authedHandle) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		s := u.session(r)
		if r.Method == http.MethodPost {
			if err := parseForm(w, r); err != nil {
				u.fail(w, r, s, err)
				return
			}
			tok := r.PostForm.Get(csrfField)
			if !(s != nil && tokenEqual(tok, s.CSRF)) && !u.validAnonCSRF(r, tok) {
				u.renderError(w, r, s, http.StatusForbidden)
				return
			}
		}
		if err := h(w, r, ps, s); err != nil {
			u.fail(w, r, s, err)
		}
	}
}

func parseForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, validate.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return validate.ErrTooLarge
		}
		return errBadForm
	}
	return nil
}

func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (u *UI) sign(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, u.secret)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// anonCSRF returns the CSRF token for an anonymous visitor's forms: the
// HMAC of a nonce kept in a cookie, set here when missing. An attacker who
// can plant cookies still cannot mint the matching token.
func (u *UI) anonCSRF(w http.ResponseWriter, r *http.Request) string {
	nonce := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		nonce = c.Value
	} else {
		b := make([]byte, 24)
		rand.Read(b)
		nonce = b64.EncodeToString(b)
		u.setCookie(w, r, csrfCookie, nonce, 0)
		// Later code in this request (a re-render) must see the same nonce.
		r.AddCookie(&http.Cookie{Name: csrfCookie, Value: nonce})
	}
	return b64.EncodeToString(u.sign("csrf", []byte(nonce)))
}

func (u *UI) validAnonCSRF(r *http.Request, tok string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	want := b64.EncodeToString(u.sign("csrf", []byte(c.Value)))
	return tokenEqual(tok, want)
}

// flash is a one-time message shown on the next page.
type flash struct {
	Level string `json:"l"` // success, error or warning
	Text  string `json:"t"`
}

func success(text string) flash { return flash{"success", text} }
func failure(text string) flash { return flash{"error", text} }
func warning(text string) flash { return flash{"warning", text} }

// redirect answers a POST with 302 to target, carrying flashes in a signed
// cookie for the page it lands on (post/redirect/get).
func (u *UI) redirect(w http.ResponseWriter, r *http.Request, target string, flashes ...flash) {
	if len(flashes) > 0 {
		body, _ := json.Marshal(flashes)
		val := b64.EncodeToString(body) + "." + b64.EncodeToString(u.sign("flash", body))
		u.setCookie(w, r, flashCookie, val, 300)
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// takeFlashes reads and clears the pending messages.
func (u *UI) takeFlashes(w http.ResponseWriter, r *http.Request) []flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	u.setCookie(w, r, flashCookie, "", -1)
	body64, sig64, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil
	}
	body, err1 := b64.DecodeString(body64)
	sig, err2 := b64.DecodeString(sig64)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, u.sign("flash", body)) {
		return nil
	}
	var out []flash
	json.Unmarshal(body, &out)
	return out
}

// login starts a login for user: a new server-side session and its cookie.
func (u *UI) login(w http.ResponseWriter, r *http.Request, userID string) (*session, error) {
	if old, err := r.Cookie(sessionCookie); err == nil && old.Value != "" {
		u.db.DeleteUISession(r.Context(), old.Value)
	}
	s, err := u.db.CreateUISession(r.Context(), userID, loginTTL)
	if err != nil {
		return nil, err
	}
	u.setCookie(w, r, sessionCookie, s.Token, int(loginTTL/time.Second))
	return &session{UISession: s, token: s.Token}, nil
}

// clientIP is the address login and sign-up throttling count per: the
// direct peer, unless it is a trusted proxy; then the last address of
// X-Forwarded-For that is not one (anything before it is the client's to
// forge).
func (u *UI) clientIP(r *http.Request) string {
	addr := peer(r)
	if !u.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !u.trusted(hop) {
			return hop
		}
	}
	return addr
}

// limiter counts recent failures per key in memory.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
	now    func() time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, fails: map[string][]time.Time{}, now: time.Now}
}

// recent drops failures older than the window and returns the rest.
func (l *limiter) recent(key string, now time.Time) []time.Time {
	ts := l.fails[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.fails, key)
		return nil
	}
	l.fails[key] = ts
	return ts
}

// blocked reports whether any key has reached the limit.
func (l *limiter) blocked(keys ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range keys {
		if len(l.recent(k, now)) >= l.max {
			return true
		}
	}
	return false
}

// fail records a failure against every key.
func (l *limiter) fail(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) > 50000 {
		// Bound memory under a spray of usernames: drop what has aged out.
		for k := range l.fails {
			l.recent(k, now)
		}
	}
	for _, k := range keys {
		l.fails[k] = append(l.recent(k, now), now)
	}
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
