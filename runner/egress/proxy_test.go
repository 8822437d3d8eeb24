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
	"strings"
	"testing"
	"time"
)

func TestLimitedPolicy(t *testing.T) {
	u := startUpstream(t)
	res := newResolver(map[string]string{
		"github.test":           "127.0.0.2",
		"api.example.test":      "127.0.0.2",
		"deep.sub.example.test": "127.0.0.2",
		"example.test":          "127.0.0.2",
		"evil.test":             "127.0.0.2",
	})
	rec := &recorder{}
	pol := Policy{
		Limited:  true,
		Hosts:    []string{"github.test", "*.example.test"},
		Operator: mustRules(t, "127.0.0.2/32"),
	}
	addr := serve(t, &Proxy{Resolver: res}, pol, rec)
	p := itoa(u.port)

	mustConnect(t, addr, "github.test:"+p)
	mustConnect(t, addr, "GitHub.TEST.:"+p)
	mustConnect(t, addr, "api.example.test:"+p)
	mustConnect(t, addr, "deep.sub.example.test:"+p)
	mustConnect(t, addr, "127.0.0.2:"+p) // an operator CIDR allows the IP literal

	resp, _, _ := connect(t, addr, "evil.test:"+p)
	b := body(t, resp)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("evil.test: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("refusal Content-Type %q", ct)
	}
	if !resp.Close {
		t.Errorf("refusal does not close the connection")
	}
	want := "aod egress proxy: evil.test:" + p + " is not allowed by this session's network policy (limited: allowed hosts github.test, *.example.test; operator allows 127.0.0.2)\n"
	if b != want {
		t.Errorf("refusal body\n got %q\nwant %q", b, want)
	}
	mustRefuse(t, addr, "example.test:"+p, "example.test:"+p+" is not allowed") // the apex is not a subdomain
	mustRefuse(t, addr, "127.0.0.1:"+p, "127.0.0.1:"+p+" is not allowed")

	// A name the policy refuses is never looked up.
	if res.lookedUp("evil.test") || res.lookedUp("example.test") {
		t.Errorf("refused names were resolved: %v", res.lookups)
	}
	for _, r := range []record{
		{"github.test", u.port, true},
		{"deep.sub.example.test", u.port, true},
		{"evil.test", u.port, false},
		{"example.test", u.port, false},
		{"127.0.0.1", u.port, false},
	} {
		if !rec.has(r) {
			t.Errorf("no record %+v in %+v", r, rec.recs)
		}
	}
	if n := rec.count(record{"github.test", u.port, true}); n != 2 {
		t.Errorf("github.test recorded %d times, want 2 (once per connection)", n)
	}
}

func TestUnrestrictedAddressCheck(t *testing.T) {
	u := startUpstream(t)
	res := newResolver(map[string]string{
		"loop.test":     "127.0.0.1",
		"other.test":    "127.0.0.1",
		"meta.test":     "169.254.169.254",
		"hostself.test": "198.51.100.7",
		"mapped.test":   "::ffff:10.0.0.1",
		"public.test":   "203.0.113.5",
	})
	hostAddrs := func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("198.51.100.7")} }
	// Every dial, whatever the address, lands on the upstream: a refusal
	// the proxy failed to make would show as a 200.
	dl := &dialLog{fallback: u.addr}
	addr := serve(t, &Proxy{Resolver: res, Dial: dl.Dial, HostAddrs: hostAddrs}, Policy{}, nil)

	got := mustRefuse(t, addr, "127.0.0.1:8080", "")
	if want := "aod egress proxy: 127.0.0.1:8080 is refused: loopback address (policy unrestricted; an operator can allow it with --egress-allow)\n"; got != want {
		t.Errorf("refusal\n got %q\nwant %q", got, want)
	}
	for target, want := range map[string]string{
		"169.254.169.254:80":        "169.254.169.254:80 is refused: link-local address",
		"10.0.0.1:80":               "10.0.0.1:80 is refused: private address",
		"loop.test:80":              "loop.test:80 is refused: it resolves to 127.0.0.1, a loopback address",
		"meta.test:80":              "it resolves to 169.254.169.254, a link-local address",
		"mapped.test:80":            "it resolves to 10.0.0.1, a private address",
		"hostself.test:80":          "it resolves to 198.51.100.7, an address of the aod host",
		"198.51.100.7:22":           "address of the aod host",
		"[::1]:80":                  "[::1]:80 is refused: loopback address",
		"[::ffff:127.0.0.1]:80":     "127.0.0.1:80 is refused: loopback address",
		"0.0.0.0:80":                "unspecified address",
		"100.64.1.1:80":             "carrier-grade NAT address",
		"255.255.255.255:80":        "broadcast address",
		"[fd00::1]:80":              "private address",
		"[64:ff9b::7f00:1]:80":      "NAT64 form of a loopback address",
		"192.168.1.1:80":            "private address",
		"127.0.0.2:" + itoa(u.port): "loopback address",
	} {
		mustRefuse(t, addr, target, want)
	}
	if d := dl.dialled(); len(d) != 0 {
		t.Fatalf("refused requests were dialled: %v", d)
	}
	mustConnect(t, addr, "public.test:80")
	if d := dl.dialled(); len(d) != 1 || d[0] != "203.0.113.5:80" {
		t.Fatalf("dialled %v, want [203.0.113.5:80]", d)
	}

	// Operator rules: a CIDR, an IP and a host name.
	dl2 := &dialLog{fallback: u.addr}
	rules := mustRules(t, "10.0.0.0/8", "169.254.169.254", "loop.test")
	addr2 := serve(t, &Proxy{Resolver: res, Dial: dl2.Dial, HostAddrs: hostAddrs}, Policy{Operator: rules}, nil)
	mustConnect(t, addr2, "10.0.0.1:80")
	mustConnect(t, addr2, "mapped.test:80") // resolves into 10/8
	mustConnect(t, addr2, "169.254.169.254:80")
	mustConnect(t, addr2, "loop.test:80")
	// The host-name rule exempts that name, not the address it resolves to.
	mustRefuse(t, addr2, "other.test:80", "other.test:80 is refused: it resolves to 127.0.0.1, a loopback address")
	mustRefuse(t, addr2, "127.0.0.1:80", "loopback address")
	mustRefuse(t, addr2, "169.254.169.253:80", "link-local address")
	want := []string{"10.0.0.1:80", "10.0.0.1:80", "169.254.169.254:80", "127.0.0.1:80"}
	if d := dl2.dialled(); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("dialled %v, want %v", d, want)
	}
}

func TestResolutionFailure(t *testing.T) {
	addr := serve(t, &Proxy{Resolver: newResolver(nil)}, Policy{}, nil)
	resp, _, _ := connect(t, addr, "nx.test:443")
	b := body(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(b, "cannot resolve nx.test") {
		t.Fatalf("unresolvable name: %s %q", resp.Status, b)
	}
	resp, _, _ = connect(t, addr, "github.test")
	if b := body(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(b, "explicit port") {
		t.Fatalf("CONNECT without a port: %s %q", resp.Status, b)
	}
}

func TestDNSRebinding(t *testing.T) {
	u := startUpstream(t)
	res := newResolver(map[string]string{
		"mixed.test": "127.0.0.1,203.0.113.11,::1",
	})
	res.answer["rebind.test"] = func(n int) []netip.Addr {
		if n == 1 {
			return []netip.Addr{netip.MustParseAddr("203.0.113.10")}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	dl := &dialLog{fallback: u.addr}
	addr := serve(t, &Proxy{Resolver: res, Dial: dl.Dial}, Policy{}, nil)

	// Two forwarded requests on one connection: the first resolves to the
	// public address, the second to loopback, and is refused.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(path string) (*http.Response, string) {
		fmt.Fprintf(c, "GET http://rebind.test%s HTTP/1.1\r\nHost: rebind.test\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body(t, resp)
	}
	if resp, b := get("/first"); resp.StatusCode != 200 || b != "upstream /first" {
		t.Fatalf("first request: %s %q", resp.Status, b)
	}
	if resp, b := get("/second"); resp.StatusCode != 403 || !strings.Contains(b, "rebind.test:80 is refused: it resolves to 127.0.0.1") {
		t.Fatalf("second request: %s %q", resp.Status, b)
	}

	mustRefuse(t, addr, "rebind.test:443", "it resolves to 127.0.0.1")
	if code, _ := socks(t, addr, socksDomain, "rebind.test", 443); code != socksNotAllowed {
		t.Errorf("SOCKS5 rebind.test: reply %#x, want %#x", code, socksNotAllowed)
	}
	// A name with loopback among its addresses is dialled at the others only.
	mustConnect(t, addr, "mixed.test:80")

	want := []string{"203.0.113.10:80", "203.0.113.11:80"}
	if d := dl.dialled(); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("dialled %v, want %v (never a loopback address)", d, want)
	}
}

func TestInternalEndpoint(t *testing.T) {
	u := startUpstream(t)
	internal := []string{u.addr}
	addr := serve(t, &Proxy{Resolver: newResolver(nil)}, Policy{Limited: true, Internal: internal}, nil)
	mustConnect(t, addr, u.addr)
	mustRefuse(t, addr, "127.0.0.2:1", "127.0.0.2:1 is not allowed")

	client := proxyClient(t, "http://"+addr)
	resp, err := client.Get("http://" + u.addr + "/internal")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 200 || b != "upstream /internal" {
		t.Fatalf("forward to the internal endpoint: %s %q", resp.Status, b)
	}

	// Unrestricted: the address check would refuse loopback, but not an
	// internal endpoint.
	addr2 := serve(t, &Proxy{Resolver: newResolver(nil)}, Policy{Internal: internal}, nil)
	mustConnect(t, addr2, u.addr)
	mustRefuse(t, addr2, "127.0.0.2:1", "loopback address")
}

func TestSOCKS5(t *testing.T) {
	u := startUpstream(t)
	res := newResolver(map[string]string{"github.test": "127.0.0.2", "evil.test": "127.0.0.2"})
	rec := &recorder{}
	pol := Policy{Limited: true, Hosts: []string{"github.test"}, Operator: mustRules(t, "127.0.0.2/32")}
	addr := serve(t, &Proxy{Resolver: res}, pol, rec)

	code, c := socks(t, addr, socksDomain, "github.test", u.port)
	if code != socksSucceeded {
		t.Fatalf("SOCKS5 github.test: reply %#x", code)
	}
	if got := tunnelGet(t, c, bufio.NewReader(c), "github.test", "/socks"); got != "upstream /socks" {
		t.Fatalf("SOCKS5 tunnel answered %q", got)
	}
	code, c = socks(t, addr, socksIPv4, "127.0.0.2", u.port)
	if code != socksSucceeded {
		t.Fatalf("SOCKS5 127.0.0.2: reply %#x", code)
	}
	if got := tunnelGet(t, c, bufio.NewReader(c), u.addr, "/v4"); got != "upstream /v4" {
		t.Fatalf("SOCKS5 IPv4 tunnel answered %q", got)
	}
	for _, tc := range []struct {
		atyp byte
		host string
	}{
		{socksDomain, "evil.test"},
		{socksIPv4, "127.0.0.1"},
		{socksIPv6, "::1"},
	} {
		if code, _ := socks(t, addr, tc.atyp, tc.host, u.port); code != socksNotAllowed {
			t.Errorf("SOCKS5 %s: reply %#x, want %#x", tc.host, code, socksNotAllowed)
		}
	}
	if code, _ := socksCmd(t, addr, 0x02, socksDomain, "github.test", u.port); code != socksCmdNotSupported {
		t.Errorf("SOCKS5 BIND: reply %#x, want %#x", code, socksCmdNotSupported)
	}
	if !rec.has(record{"github.test", u.port, true}) || !rec.has(record{"evil.test", u.port, false}) || !rec.has(record{"127.0.0.2", u.port, true}) {
		t.Errorf("records %+v", rec.recs)
	}

	// Only "no authentication" is offered.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	c2.Write([]byte{5, 1, 2})
	var m [2]byte
	if _, err := io.ReadFull(c2, m[:]); err != nil || m != [2]byte{5, 0xff} {
		t.Errorf("user/pass only: method reply %v %v, want [5 255]", m, err)
	}

	// Unrestricted: an unresolvable name and a refused connection.
	addr2 := serve(t, &Proxy{Resolver: res}, Policy{Operator: mustRules(t, "127.0.0.2/32")}, nil)
	if code, _ := socks(t, addr2, socksDomain, "nx.test", 80); code != socksHostUnreachable {
		t.Errorf("SOCKS5 nx.test: reply %#x, want %#x", code, socksHostUnreachable)
	}
	if code, _ := socks(t, addr2, socksIPv4, "127.0.0.2", freePort(t, "127.0.0.2")); code != socksConnRefused {
		t.Errorf("SOCKS5 to a closed port: reply %#x, want %#x", code, socksConnRefused)
	}
}

func proxyClient(t *testing.T, proxy string) *http.Client {
	t.Helper()
	pu, err := url.Parse(proxy)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestHTTPForward(t *testing.T) {
	u := startUpstream(t)
	res := newResolver(map[string]string{"github.test": "127.0.0.2", "evil.test": "127.0.0.2"})
	rec := &recorder{}
	pol := Policy{Limited: true, Hosts: []string{"github.test", "nx.test"}, Operator: mustRules(t, "127.0.0.2/32")}
	addr := serve(t, &Proxy{Resolver: res}, pol, rec)
	p := itoa(u.port)

	// Through net/http's own proxy support, with proxy credentials that
	// must not reach the server.
	client := proxyClient(t, "http://user:secret@"+addr)
	resp, err := client.Get("http://github.test:" + p + "/hello?q=1")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 200 || b != "upstream /hello?q=1" {
		t.Fatalf("GET through the proxy: %s %q", resp.Status, b)
	}
	seen := u.last()
	if seen.Host != "github.test:"+p {
		t.Errorf("upstream saw Host %q", seen.Host)
	}
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection"} {
		if v := seen.Header.Get(h); v != "" {
			t.Errorf("upstream saw %s: %q", h, v)
		}
	}
	resp, err = client.Get("http://evil.test:" + p + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 403 || !strings.Contains(b, "evil.test:"+p+" is not allowed by this session's network policy (limited: allowed hosts github.test, nx.test") {
		t.Fatalf("refused GET: %s %q", resp.Status, b)
	}
	resp, err = client.Get("http://nx.test/")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 502 || !strings.Contains(b, "cannot resolve nx.test") {
		t.Fatalf("unresolvable GET: %s %q", resp.Status, b)
	}

	// Raw: keep-alive across two requests on one connection, each checked
	// and recorded, hop-by-hop headers dropped; then a refusal.
	before := rec.count(record{"github.test", u.port, true})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	send := func(req string) (*http.Response, string) {
		t.Helper()
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		return resp, body(t, resp)
	}
	for _, path := range []string{"/one", "/two"} {
		resp, b := send("GET http://github.test:" + p + path + " HTTP/1.1\r\nHost: github.test:" + p +
			"\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n")
		if resp.StatusCode != 200 || b != "upstream "+path || resp.Close {
			t.Fatalf("keep-alive %s: %s %q (close %v)", path, resp.Status, b, resp.Close)
		}
		seen := u.last()
		if seen.Header.Get("X-Hop") != "" || seen.Header.Get("Proxy-Connection") != "" || seen.Header.Get("X-Kept") != "yes" {
			t.Errorf("upstream headers %v", seen.Header)
		}
	}
	if n := rec.count(record{"github.test", u.port, true}) - before; n != 2 {
		t.Errorf("two requests on one connection were recorded %d times", n)
	}
	resp, b := send("GET http://evil.test:" + p + "/ HTTP/1.1\r\nHost: evil.test\r\n\r\n")
	if resp.StatusCode != 403 || !strings.Contains(b, "evil.test:"+p+" is not allowed") {
		t.Fatalf("refused after keep-alive: %s %q", resp.Status, b)
	}

	// Not proxy requests.
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: github.test\r\n\r\n",
		"GET https://github.test/ HTTP/1.1\r\nHost: github.test\r\n\r\n",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := body(t, resp); resp.StatusCode != 400 || !strings.HasPrefix(b, "aod egress proxy: ") {
			t.Errorf("%q: %s %q, want 400", req, resp.Status, b)
		}
		c.Close()
	}
}

func TestTimeoutsAndBounds(t *testing.T) {
	u := startUpstream(t)
	pol := Policy{Operator: mustRules(t, "127.0.0.2/32")}
	addr := serve(t, &Proxy{Resolver: newResolver(nil), Timeout: 300 * time.Millisecond}, pol, nil)

	for name, first := range map[string]string{
		"silent":         "",
		"partial header": "GET http://127.0.0.2/ HTTP/1.1\r\nHost: 127.0.0.2\r\n",
		"partial SOCKS5": "\x05\x01",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, first)
		start := time.Now()
		readClosed(t, c, 5*time.Second)
		if time.Since(start) < 200*time.Millisecond {
			t.Errorf("%s: closed after %v, before the timeout", name, time.Since(start))
		}
		c.Close()
	}

	// An open tunnel is not bound by the header timeout.
	resp, c, br := connect(t, addr, u.addr)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	time.Sleep(500 * time.Millisecond)
	if got := tunnelGet(t, c, br, u.addr, "/later"); got != "upstream /later" {
		t.Fatalf("tunnel after the timeout answered %q", got)
	}

	// Oversized headers.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	go fmt.Fprintf(c2, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", u.addr, u.addr, strings.Repeat("a", 100<<10))
	resp2, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp2.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: %s, want 431", resp2.Status)
	}
}

func TestServeLifecycle(t *testing.T) {
	u := startUpstream(t)
	pol := Policy{Operator: mustRules(t, "127.0.0.2/32")}
	p := &Proxy{Resolver: newResolver(nil)}

	// Closing the listener: Serve returns, open tunnels carry on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, l, pol, nil, nil) }()
	resp, c, br := connect(t, l.Addr().String(), u.addr)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its listener was closed")
	}
	if got := tunnelGet(t, c, br, u.addr, "/after-close"); got != "upstream /after-close" {
		t.Fatalf("tunnel after the listener closed answered %q", got)
	}

	// Ending the context: Serve returns and closes its tunnels.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- p.Serve(ctx2, l2, pol, nil, nil) }()
	resp, c2, _ := connect(t, l2.Addr().String(), u.addr)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	// An idle forward-proxy connection too.
	c3, err := net.Dial("tcp", l2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	fmt.Fprintf(c3, "GET http://%s/x HTTP/1.1\r\nHost: %s\r\n\r\n", u.addr, u.addr)
	br3 := bufio.NewReader(c3)
	if resp, err := http.ReadResponse(br3, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("forward: %v %v", resp, err)
	} else {
		body(t, resp)
	}
	cancel2()
	select {
	case err := <-done2:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	readClosed(t, c2, 5*time.Second)
	readClosed(t, c3, 5*time.Second)
}
