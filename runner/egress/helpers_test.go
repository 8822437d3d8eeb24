package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// No test touches the network: names resolve through fakeResolver, and
// upstreams listen on 127.0.0.2 (Linux routes all of 127/8 to lo), which a
// test allows with an operator rule while the rest of loopback stays
// forbidden.

// fakeResolver answers from a table; answer, when set for a name, is
// called with the lookup's number (1, 2, ...) instead.
type fakeResolver struct {
	mu      sync.Mutex
	names   map[string][]netip.Addr
	answer  map[string]func(n int) []netip.Addr
	counts  map[string]int
	lookups []string
}

func newResolver(names map[string]string) *fakeResolver {
	r := &fakeResolver{names: map[string][]netip.Addr{}, answer: map[string]func(int) []netip.Addr{}, counts: map[string]int{}}
	for name, addrs := range names {
		for _, a := range strings.Split(addrs, ",") {
			r.names[name] = append(r.names[name], netip.MustParseAddr(a))
		}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[host]++
	r.lookups = append(r.lookups, host)
	if f, ok := r.answer[host]; ok {
		return f(r.counts[host]), nil
	}
	if addrs, ok := r.names[host]; ok {
		return addrs, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *fakeResolver) lookedUp(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[host] > 0
}

type record struct {
	host    string
	port    int
	allowed bool
}

type recorder struct {
	mu   sync.Mutex
	recs []record
}

func (r *recorder) Record(host string, port int, allowed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, record{host, port, allowed})
}

func (r *recorder) has(want record) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if rec == want {
			return true
		}
	}
	return false
}

func (r *recorder) count(want record) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec == want {
			n++
		}
	}
	return n
}

// dialLog is a Proxy.Dial hook that records every address dialled and
// connects to redirect[address] (or to a default, or the address itself).
type dialLog struct {
	mu       sync.Mutex
	addrs    []string
	redirect map[string]string
	fallback string // where addresses not in redirect go; "" = themselves
}

func (d *dialLog) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, address)
	to := address
	if r, ok := d.redirect[address]; ok {
		to = r
	} else if d.fallback != "" {
		to = d.fallback
	}
	d.mu.Unlock()
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("dial hook got %q, not ip:port", address)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

func (d *dialLog) dialled() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.addrs...)
}

// upstream is an HTTP server on 127.0.0.2 that records what it was sent.
type upstream struct {
	addr string
	port int
	mu   sync.Mutex
	seen []*http.Request
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.2: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		fmt.Fprintf(w, "upstream %s", r.RequestURI)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	u.addr = l.Addr().String()
	u.port = l.Addr().(*net.TCPAddr).Port
	return u
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

// serve runs p.Serve on a fresh TCP listener on 127.0.0.1 and returns its
// address; the test's end cancels it and waits for Serve to return.
func serve(t *testing.T, p *Proxy, pol Policy, rec Recorder) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, p, l, pol, rec)
	return l.Addr().String()
}

func serveOn(t *testing.T, p *Proxy, l net.Listener, pol Policy, rec Recorder) {
	t.Helper()
	serveWith(t, p, l, pol, rec, nil)
}

// serveWith is serveOn with own serving the requests to the proxy itself.
func serveWith(t *testing.T, p *Proxy, l net.Listener, pol Policy, rec Recorder, own http.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l, pol, rec, own) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
}

// connect sends CONNECT target to the proxy at addr and reads the reply.
// The caller reads the body of a refusal; on 200 the connection is a
// tunnel, read through br.
func connect(t *testing.T, addr, target string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp, c, br
}

// body reads a response's body.
func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tunnelGet sends a GET over an open tunnel and returns the body.
func tunnelGet(t *testing.T, c net.Conn, br *bufio.Reader, host, path string) string {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s over the tunnel: %v", path, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s over the tunnel: %s", path, resp.Status)
	}
	return body(t, resp)
}

// mustConnect opens a tunnel and checks it reaches the upstream.
func mustConnect(t *testing.T, addr, target string) {
	t.Helper()
	resp, c, br := connect(t, addr, target)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %s: %s", target, resp.Status, body(t, resp))
	}
	if got := tunnelGet(t, c, br, target, "/tunnel"); got != "upstream /tunnel" {
		t.Fatalf("CONNECT %s: tunnel answered %q", target, got)
	}
	c.Close()
}

// mustRefuse checks CONNECT target gets a 403 whose body contains want,
// and returns the body.
func mustRefuse(t *testing.T, addr, target, want string) string {
	t.Helper()
	resp, _, _ := connect(t, addr, target)
	b := body(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT %s: got %s (%q), want 403", target, resp.Status, b)
	}
	if !strings.Contains(b, want) {
		t.Fatalf("CONNECT %s: refusal %q does not contain %q", target, b, want)
	}
	return b
}

// socks runs a SOCKS5 CONNECT handshake to host:port with address type
// atyp (socksIPv4, socksIPv6 or socksDomain) and returns the reply code.
func socks(t *testing.T, addr string, atyp byte, host string, port int) (byte, net.Conn) {
	t.Helper()
	return socksCmd(t, addr, socksConnect, atyp, host, port)
}

func socksCmd(t *testing.T, addr string, cmd, atyp byte, host string, port int) (byte, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("SOCKS5 method reply %v, %v", m, err)
	}
	req := []byte{5, cmd, 0, atyp}
	switch atyp {
	case socksIPv4, socksIPv6:
		a := netip.MustParseAddr(host)
		req = append(req, a.AsSlice()...)
	case socksDomain:
		req = append(append(req, byte(len(host))), host...)
	}
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [4]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("SOCKS5 reply: %v", err)
	}
	if rep[0] != 5 || rep[2] != 0 {
		t.Fatalf("SOCKS5 reply header %v", rep)
	}
	n := 4
	switch rep[3] {
	case socksIPv6:
		n = 16
	case socksIPv4:
	default:
		t.Fatalf("SOCKS5 reply address type %d", rep[3])
	}
	bound := make([]byte, n+2)
	if _, err := io.ReadFull(c, bound); err != nil {
		t.Fatalf("SOCKS5 reply address: %v", err)
	}
	return rep[1], c
}

// freePort returns a port free on ip at the time of asking.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func itoa(n int) string { return strconv.Itoa(n) }

// readClosed checks c is closed by its peer within d.
func readClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
}
