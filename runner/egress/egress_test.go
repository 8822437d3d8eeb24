package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"
)

// fakeDNS maps names to addresses; each lookup takes the next answer of a
// name's list (the last repeats), so a rebinding resolver can be played.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
}

func (d *fakeDNS) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.answers[host]
	if len(a) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	first := a[0]
	if len(a) > 1 {
		d.answers[host] = a[1:]
	}
	return first, nil
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// records is a Recorder keeping everything.
type records struct {
	mu   sync.Mutex
	list []string
}

func (r *records) Record(host string, port int, allowed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, fmt.Sprintf("%s:%d %v", host, port, allowed))
}

func (r *records) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.list...)
}

// upstream is an HTTP server on 127.0.0.2 answering its own name.
func upstream(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s says hi to %s", name, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// harness is a proxy on a unix socket with a dial log.
type harness struct {
	sock   string
	rec    *records
	mu     sync.Mutex
	dialed []string
}

func serveProxy(t *testing.T, dns *fakeDNS, pol Policy) *harness {
	t.Helper()
	h := &harness{sock: filepath.Join(t.TempDir(), "p.sock"), rec: &records{}}
	ln, err := net.Listen("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Resolver: dns, HostAddrs: func() []netip.Addr { return addrs("192.0.2.77") },
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			h.mu.Lock()
			h.dialed = append(h.dialed, address)
			h.mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	go p.Serve(ctx, ln, pol, h.rec)
	t.Cleanup(func() { cancel(); ln.Close() })
	return h
}

// connect sends a CONNECT and returns the status line's code and the body
// of a refusal, or the tunnel.
func (h *harness) connect(t *testing.T, target string) (int, string, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		return resp.StatusCode, string(body), nil
	}
	return 200, "", c
}

// get fetches url through the tunnel target with a plain GET.
func get(t *testing.T, c net.Conn, host string) string {
	t.Helper()
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func TestLimitedAllowsListedHostsAndWildcards(t *testing.T) {
	is := is.New(t)
	up := upstream(t, "up")
	port := portOf(up)
	dns := &fakeDNS{answers: map[string][][]netip.Addr{
		"api.example.test": {addrs("127.0.0.2")}, "a.b.example.test": {addrs("127.0.0.2")},
		"example.test": {addrs("127.0.0.2")}, "evil.test": {addrs("127.0.0.2")},
	}}
	rule, err := ParseRule("127.0.0.2/32")
	is.NoErr(err) // the upstreams' address is the operator's to allow
	h := serveProxy(t, dns, Policy{Limited: true, Hosts: []string{"API.example.test", "*.example.test"}, Operator: []Rule{rule}})

	code, _, c := h.connect(t, "api.example.test:"+port)
	is.Equal(code, 200)                                         // a listed host (case-insensitive)
	is.Equal(get(t, c, "api.example.test"), "up says hi to /x") // reaches its upstream
	code, _, c = h.connect(t, "a.b.example.test:"+port)
	is.Equal(code, 200) // a subdomain of a wildcard
	c.Close()
	code, body, _ := h.connect(t, "example.test:"+port)
	is.Equal(code, 403)                              // the wildcard's apex is not included
	is.True(strings.Contains(body, "example.test:")) // the refusal names the host
	code, body, _ = h.connect(t, "evil.test:"+port)
	is.Equal(code, 403)                                // an unlisted host is refused
	is.True(strings.Contains(body, "evil.test:"+port)) // naming the host
	is.True(strings.Contains(body, "limited"))         // and the policy
	is.True(strings.Contains(body, "*.example.test"))  // and what it allows
	is.Equal(h.rec.all(), []string{"api.example.test:" + port + " true", "a.b.example.test:" + port + " true",
		"example.test:" + port + " false", "evil.test:" + port + " false"}) // every attempt is recorded
}

func TestUnrestrictedRefusesTheHostsNetworkUnlessAllowed(t *testing.T) {
	is := is.New(t)
	up := upstream(t, "up")
	port := portOf(up)
	dns := &fakeDNS{answers: map[string][][]netip.Addr{"local.test": {addrs("127.0.0.2")}, "mirror.internal": {addrs("127.0.0.2")}}}
	h := serveProxy(t, dns, Policy{})
	for _, target := range []string{"127.0.0.1:" + port, "127.0.0.2:" + port, "169.254.169.254:80", "10.0.0.1:80", "[::1]:80",
		"[::ffff:127.0.0.2]:" + port, "local.test:" + port, "192.0.2.77:80", "100.64.0.1:80"} {
		code, body, _ := h.connect(t, target)
		is.Equal(code, 403)                         // the host's own network is out of reach
		is.True(strings.Contains(body, "refused:")) // with the reason
	}
	h.mu.Lock()
	is.Equal(len(h.dialed), 0) // nothing was dialled
	h.mu.Unlock()

	for _, allow := range []string{"127.0.0.2", "127.0.0.0/8", "mirror.internal"} {
		rule, err := ParseRule(allow)
		is.NoErr(err)
		h := serveProxy(t, dns, Policy{Operator: []Rule{rule}})
		target := "127.0.0.2:" + port
		if allow == "mirror.internal" {
			target = "mirror.internal:" + port
		}
		code, _, c := h.connect(t, target)
		is.Equal(code, 200) // an operator rule lets it through
		is.Equal(get(t, c, "x"), "up says hi to /x")
	}
}

// A name that resolves to a public address once and to loopback the next
// time, or to both at once, never leads the proxy to the loopback address.
func TestNoDNSRebinding(t *testing.T) {
	is := is.New(t)
	dns := &fakeDNS{answers: map[string][][]netip.Addr{
		"rebind.test": {addrs("203.0.113.9"), addrs("127.0.0.1")},
		"both.test":   {addrs("203.0.113.9", "127.0.0.1")},
	}}
	h := serveProxy(t, dns, Policy{})
	for i := 0; i < 3; i++ {
		h.connect(t, "rebind.test:80")
	}
	code, _, _ := h.connect(t, "both.test:80")
	is.Equal(code, 403) // a name with a loopback address is refused outright
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range h.dialed {
		is.True(!strings.HasPrefix(d, "127.")) // only checked addresses are dialled, never the name
	}
	is.True(len(h.dialed) >= 1) // the public answer was dialled (and failed: no network here)
}

func TestInternalEndpointsAlwaysReachable(t *testing.T) {
	is := is.New(t)
	up := upstream(t, "model")
	h := serveProxy(t, &fakeDNS{}, Policy{Limited: true, Hosts: []string{"github.com"}, Internal: []string{up}})
	code, _, c := h.connect(t, up)
	is.Equal(code, 200) // aod's own endpoint on loopback, in limited mode
	is.Equal(get(t, c, "m"), "model says hi to /x")
	other := strings.Replace(up, portOf(up), "1", 1)
	code, _, _ = h.connect(t, other)
	is.Equal(code, 403) // only that port
}

// socks5 dials target through the proxy and returns the reply code.
func socks5(t *testing.T, sock string, atyp byte, addr []byte, port uint16) (byte, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{5, 1, 0})
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("method reply %v %v", m, err)
	}
	req := []byte{5, 1, 0, atyp}
	if atyp == 3 {
		req = append(req, byte(len(addr)))
	}
	req = append(append(req, addr...), byte(port>>8), byte(port))
	c.Write(req)
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatal(err)
	}
	return rep[1], c
}

func TestSOCKS5(t *testing.T) {
	is := is.New(t)
	up := upstream(t, "up")
	var port uint16
	fmt.Sscan(portOf(up), &port)
	rule, _ := ParseRule("127.0.0.2")
	dns := &fakeDNS{answers: map[string][][]netip.Addr{"ok.test": {addrs("127.0.0.2")}, "no.test": {addrs("127.0.0.2")}}}
	h := serveProxy(t, dns, Policy{Limited: true, Hosts: []string{"ok.test"}, Operator: []Rule{rule}})
	code, c := socks5(t, h.sock, 3, []byte("ok.test"), port)
	is.Equal(code, byte(0)) // a listed name
	is.Equal(get(t, c, "ok.test"), "up says hi to /x")
	code, c = socks5(t, h.sock, 1, []byte{127, 0, 0, 2}, port)
	is.Equal(code, byte(0)) // an operator-allowed IPv4 address
	c.Close()
	code, _ = socks5(t, h.sock, 3, []byte("no.test"), port)
	is.Equal(code, byte(2)) // refused by the ruleset
	code, _ = socks5(t, h.sock, 1, []byte{169, 254, 169, 254}, 80)
	is.Equal(code, byte(2)) // the metadata address too
}

func TestHTTPForward(t *testing.T) {
	is := is.New(t)
	up := upstream(t, "up")
	rule, _ := ParseRule("127.0.0.2")
	dns := &fakeDNS{answers: map[string][][]netip.Addr{"ok.test": {addrs("127.0.0.2")}, "no.test": {addrs("127.0.0.2")}}}
	h := serveProxy(t, dns, Policy{Limited: true, Hosts: []string{"ok.test"}, Operator: []Rule{rule}})
	tr := &http.Transport{
		Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: "proxy"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return net.Dial("unix", h.sock) },
	}
	client := &http.Client{Transport: tr}
	for _, p := range []string{"/a", "/b"} {
		resp, err := client.Get("http://ok.test:" + portOf(up) + p)
		is.NoErr(err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		is.Equal(resp.StatusCode, 200)          // allowed
		is.Equal(string(b), "up says hi to "+p) // two requests, one after the other
	}
	resp, err := client.Get("http://no.test:" + portOf(up) + "/")
	is.NoErr(err)
	b, _ := io.ReadAll(resp.Body)
	is.Equal(resp.StatusCode, 403)                  // refused
	is.True(strings.Contains(string(b), "no.test")) // naming the host
}

func TestRelay(t *testing.T) {
	is := is.New(t)
	up := upstream(t, "model")
	h := serveProxy(t, &fakeDNS{}, Policy{Internal: []string{up}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Forward up's own address: the relay listens there in a sprite; here
	// that address is taken, so the forward is tested separately below.
	is.NoErr(Relay(ctx, listen, h.sock, nil))
	c, err := net.Dial("tcp", listen)
	is.NoErr(err)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", up)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	is.NoErr(err)
	is.Equal(resp.StatusCode, 200) // the relay carries a proxy request to the socket

	// A forward: an address inside that tunnels to the same address.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	target := ln2.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "forwarded") })}
	go srv.Serve(ln2)
	defer srv.Close()
	h2 := serveProxy(t, &fakeDNS{}, Policy{Limited: true, Hosts: []string{"x.test"}, Internal: []string{target}})
	// The relay cannot bind target here (the upstream has it), which is the
	// error it must report.
	err = Relay(ctx, "127.0.0.1:0", h2.sock, []string{target})
	is.True(err != nil) // a forward that cannot bind is an error
	is.True(strings.Contains(err.Error(), target))
	// Through pipeTo directly (what a bound forward runs per connection).
	a, b := net.Pipe()
	go pipeTo(b, h2.sock, target)
	fmt.Fprintf(a, "GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
	r2, err := http.ReadResponse(bufio.NewReader(a), nil)
	is.NoErr(err)
	body, _ := io.ReadAll(r2.Body)
	is.Equal(string(body), "forwarded") // tunnelled to the internal endpoint
}

func TestParseRule(t *testing.T) {
	is := is.New(t)
	for in, want := range map[string]string{"10.0.0.0/8": "10.0.0.0/8", "10.1.2.3/8": "10.0.0.0/8", "192.168.1.5": "192.168.1.5/32",
		"Mirror.Internal.": "mirror.internal", "::1": "::1/128"} {
		r, err := ParseRule(in)
		is.NoErr(err)
		is.Equal(r.String(), want)
	}
	for _, bad := range []string{"", "a b", "http://", "10.0.0.0/99", "x/y"} {
		_, err := ParseRule(bad)
		is.True(err != nil) // refused
	}
	is.Equal(NormalHost("https://GitHub.com:443/x"), "github.com")
}

func TestProxyEnv(t *testing.T) {
	is := is.New(t)
	env := strings.Join(ProxyEnv(RelayAddr), "\n")
	for _, want := range []string{"HTTPS_PROXY=http://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128", "ALL_PROXY=socks5h://127.0.0.1:3128",
		"no_proxy=localhost,127.0.0.1,::1", "npm_config_https_proxy=http://127.0.0.1:3128"} {
		is.True(strings.Contains(env, want)) // every tool's setting
	}
}
