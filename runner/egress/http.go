package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// targetKey carries a forwarded request's checked target to the
// transport's dial.
type targetKey struct{}

// ServeHTTP serves the connections sniffed as HTTP: CONNECT tunnels,
// absolute-form forward-proxy requests, and origin-form requests to the
// proxy itself (see Serve).
func (s *session) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		s.serveConnect(w, r)
	case s.own != nil && r.URL.Scheme == "" && r.URL.Host == "" && strings.HasPrefix(r.RequestURI, "/"):
		s.own.ServeHTTP(w, r)
	default:
		s.serveForward(w, r)
	}
}

// plain writes a short text/plain answer and asks for the connection to be
// closed after it.
func plain(w http.ResponseWriter, code int, msg string) {
	body := msg + "\n"
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// fail answers a request that prepare or dial turned down: 403 for the
// policy, 502 for resolution or connection failures.
func fail(w http.ResponseWriter, err error) {
	var refused *refusedError
	if errors.As(err, &refused) {
		plain(w, http.StatusForbidden, refused.reason)
		return
	}
	plain(w, http.StatusBadGateway, shorten(err.Error(), 300))
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// serveConnect opens a CONNECT tunnel.
func (s *session) serveConnect(w http.ResponseWriter, r *http.Request) {
	authority := r.URL.Host
	h, p, err := net.SplitHostPort(authority)
	port, ok := parsePort(p)
	if authority == "" || err != nil || !ok {
		plain(w, http.StatusBadRequest, fmt.Sprintf("aod egress proxy: CONNECT needs host:port with an explicit port, got %q", shorten(r.RequestURI, 100)))
		return
	}
	t, err := s.prepare(r.Context(), h, port, "CONNECT", true)
	if err != nil {
		fail(w, err)
		return
	}
	up, err := s.dial(r.Context(), t)
	if err != nil {
		s.log.Debug("egress dial failed", "target", t.String(), "via", "CONNECT", "err", err)
		fail(w, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		plain(w, http.StatusInternalServerError, "aod egress proxy: cannot take over the connection")
		return
	}
	var pending []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pending = append([]byte(nil), b...)
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		conn.Close()
		return
	}
	raw := conn
	if cc, ok := conn.(*clientConn); ok {
		raw = cc.Conn
	}
	splice(s.ctx, raw, pending, up)
	conn.Close()
}

// hopHeaders are the headers that describe one connection, not the
// request, and so never cross the proxy (RFC 9110 section 7.6.1), with the
// proxy's own credentials.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// serveForward forwards one absolute-form request.
func (s *session) serveForward(w http.ResponseWriter, r *http.Request) {
	if r.URL.Scheme == "" || r.URL.Host == "" {
		plain(w, http.StatusBadRequest, "aod egress proxy: this is an HTTP proxy; it serves CONNECT and absolute-form (http://host/path) requests only")
		return
	}
	if !strings.EqualFold(r.URL.Scheme, "http") {
		plain(w, http.StatusBadRequest, fmt.Sprintf("aod egress proxy: cannot forward a %s:// URL; only http:// (use CONNECT for https)", shorten(r.URL.Scheme, 20)))
		return
	}
	port := 80
	if p := r.URL.Port(); p != "" {
		var ok bool
		if port, ok = parsePort(p); !ok {
			plain(w, http.StatusBadRequest, fmt.Sprintf("aod egress proxy: bad port %q", shorten(p, 20)))
			return
		}
	}
	t, err := s.prepare(r.Context(), r.URL.Hostname(), port, "HTTP", true)
	if err != nil {
		fail(w, err)
		return
	}

	ctx := context.WithValue(r.Context(), targetKey{}, t)
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Host = "" // the Host header is the URL's authority, never another site's
	out.URL.Scheme = "http"
	out.Close = false
	out.Header.Del("Expect") // the server side already answered it
	removeHopByHop(out.Header)
	if _, ok := r.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // not Go's default
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}

	resp, err := s.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			return
		}
		s.log.Debug("egress forward failed", "target", t.String(), "err", err)
		fail(w, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		plain(w, http.StatusBadGateway, "aod egress proxy: the server switched protocols, which forwarding does not support")
		return
	}
	removeHopByHop(resp.Header)
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	w.WriteHeader(resp.StatusCode)

	// Stream the body, flushing as it arrives (model APIs stream events).
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			// Cut the client's connection so it sees a truncated response,
			// not a complete one.
			panic(http.ErrAbortHandler)
		}
	}
}

// transportDial is the forward proxy's only way to a server: it dials the
// addresses serveForward checked for this request, and checks again
// anything it is asked for that it did not check.
func (s *session) transportDial(ctx context.Context, network, addr string) (net.Conn, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, ok := parsePort(p)
	if !ok {
		return nil, fmt.Errorf("aod egress proxy: bad port in %q", addr)
	}
	if t, _ := ctx.Value(targetKey{}).(*target); t != nil {
		if host, _, ok := normalizeHost(h); ok && host == t.host && port == t.port {
			return s.dial(ctx, t)
		}
	}
	t, err := s.prepare(ctx, h, port, "HTTP", false)
	if err != nil {
		return nil, err
	}
	return s.dial(ctx, t)
}
