package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// hostServer is an HTTP server on the host at addr ("127.0.0.1:0").
func hostServer(t *testing.T, addr, says string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, says) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type mapDNS map[string]string

func (m mapDNS) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// netBackend is a bwrap backend whose proxy resolves names with dns and
// reports to the returned log.
func netBackend(t *testing.T, dns mapDNS, allow ...string) (*Backend, func() []string) {
	t.Helper()
	requireBwrap(t)
	lb, err := newBackend(t.TempDir(), Limits{Processes: 1024, FileSizeBytes: 1 << 30, CPUSeconds: 60}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log []string
	lb.net.proxy.Resolver = dns
	lb.net.record = func(name, host string, port int, allowed bool) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, fmt.Sprintf("%s %s:%d %v", name, host, port, allowed))
	}
	for _, a := range allow {
		r, err := egress.ParseRule(a)
		if err != nil {
			t.Fatal(err)
		}
		lb.net.allow = append(lb.net.allow, r)
	}
	if err := useBwrapT(t, lb); err != nil {
		t.Fatal(err)
	}
	return lb, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), log...) }
}

// runNet runs script in sp with the proxy settings a sprite gets.
func runNet(t *testing.T, sp sprite.Sprite, script string, args ...string) string {
	t.Helper()
	code, out := run(t, sp, script)
	if code != 0 {
		t.Fatalf("script exited %d: %s", code, out)
	}
	return out
}

// A sprite reaches nothing of the host's network: not aod's own port, not
// another loopback service, not the cloud metadata address; neither
// directly (its network namespace has only loopback) nor through the proxy
// (which refuses them with a 403 saying why).
func TestSpriteCannotReachTheHostsNetwork(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	api := hostServer(t, "127.0.0.1:0", "aod api")
	other := hostServer(t, "127.0.0.1:0", "redis-ish")
	lb, log := netBackend(t, mapDNS{"sneaky.test": "127.0.0.1"})
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err)
	out := runNet(t, sp, fmt.Sprintf(`for u in http://%s/ http://%s/ http://169.254.169.254/latest/meta-data/; do
  curl -sf --max-time 5 --noproxy '*' -o /dev/null "$u" && echo "direct $u reached"
  curl -s --max-time 5 --noproxy '' -x "$HTTP_PROXY" -w '%%{http_code}\n' -o /tmp/body "$u"; grep -q refused /tmp/body && echo said-why
done
curl -s --max-time 5 --noproxy '' -x "$HTTP_PROXY" -w '%%{http_code}\n' -o /dev/null http://sneaky.test:%s/
curl -sf --max-time 5 --noproxy '' --socks5-hostname 127.0.0.1:3128 -o /dev/null http://%s/ && echo socks reached
true`, api, other, portOf(api), api))
	is.True(!strings.Contains(out, "reached"))                                          // nothing reached the host's loopback or the metadata address
	is.Equal(strings.Count(out, "403\n"), 4)                                            // the proxy refused each, and the name resolving to loopback
	is.Equal(strings.Count(out, "said-why"), 3)                                         // with a body saying why
	is.True(len(log()) >= 5)                                                            // the refusals are recorded
	is.True(strings.Contains(strings.Join(log(), "\n"), "s1 169.254.169.254:80 false")) // by sprite, host and verdict
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// limited lets through only its hosts (and wildcards), the operator's
// allow list and the model endpoint, which appears inside at its own
// loopback address.
func TestLimitedNetworkingInASprite(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	up := hostServer(t, "127.0.0.2:0", "upstream")
	model := hostServer(t, "127.0.0.1:0", "fake model")
	port := portOf(up)
	lb, log := netBackend(t, mapDNS{"registry.test": "127.0.0.2", "a.cdn.test": "127.0.0.2", "evil.test": "127.0.0.2"}, "127.0.0.2/32")
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{Network: sprite.Network{
		Limited: true, Hosts: []string{"registry.test", "*.cdn.test"}, Models: []string{model},
	}})
	is.NoErr(err)
	out := runNet(t, sp, fmt.Sprintf(`curl -s --max-time 5 http://registry.test:%[1]s/; echo
curl -s --max-time 5 https://a.cdn.test:%[1]s/ -o /dev/null -w '%%{http_code}\n'
curl -s --max-time 5 http://evil.test:%[1]s/; echo
curl -s --max-time 5 http://%[2]s/; echo`, port, model))
	lines := strings.Split(strings.ReplaceAll(strings.TrimSpace(out), "\n\n", "\n"), "\n")
	is.Equal(len(lines), 4)
	is.Equal(lines[0], "upstream") // a listed host, through the proxy
	// https to a plain-HTTP upstream fails the TLS handshake after the
	// tunnel was allowed (code 000), not with a refusal.
	is.Equal(lines[1], "000")
	is.True(strings.Contains(lines[2], "evil.test:"+port+" is not allowed by this session's network policy (limited")) // the 403 body names host and policy
	is.Equal(lines[3], "fake model")                                                                                   // the model endpoint on the host's loopback, at its own address
	joined := strings.Join(log(), "\n")
	is.True(strings.Contains(joined, "s1 registry.test:"+port+" true")) // allowed connections are recorded
	is.True(strings.Contains(joined, "s1 a.cdn.test:"+port+" true"))    // the wildcard one too
	is.True(strings.Contains(joined, "s1 evil.test:"+port+" false"))    // and the refused one
}

// At most n proxy connections of one command are open at once; closing
// one lets the next in.
func TestProxyConnectionsBounded(t *testing.T) {
	is := is.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	l := limitListener(ln, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		is.NoErr(err)
		defer c.Close()
	}
	first, second := <-accepted, <-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the bound of 2")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second close releases nothing more
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("closing one did not let the waiting connection in")
	}
	second.Close()
}
