package egress

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRelay(t *testing.T) {
	u := startUpstream(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "egress.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	// The forward address stands for the model API on the host's
	// loopback; the test shares one network namespace, so it sits on
	// 127.0.0.3 and the proxy's dial hook takes it to the upstream.
	fwd := "127.0.0.3:" + itoa(freePort(t, "127.0.0.3"))
	dl := &dialLog{redirect: map[string]string{fwd: u.addr}}
	res := newResolver(map[string]string{"github.test": "127.0.0.2"})
	pol := Policy{
		Limited:  true,
		Hosts:    []string{"github.test"},
		Operator: mustRules(t, "127.0.0.2/32"),
		Internal: []string{fwd},
	}
	serveOn(t, &Proxy{Resolver: res, Dial: dl.Dial}, ul, pol, nil)

	relay := "127.0.0.1:" + itoa(freePort(t, "127.0.0.1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Relay(ctx, relay, sock, []string{fwd}); err != nil {
		t.Fatal(err)
	}

	// HTTP forward, CONNECT and SOCKS5 through the relay.
	client := proxyClient(t, "http://"+relay)
	resp, err := client.Get("http://github.test:" + itoa(u.port) + "/via-relay")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 200 || b != "upstream /via-relay" {
		t.Fatalf("GET through the relay: %s %q", resp.Status, b)
	}
	mustConnect(t, relay, "github.test:"+itoa(u.port))
	mustRefuse(t, relay, "evil.test:443", "evil.test:443 is not allowed by this session's network policy")
	if code, _ := socks(t, relay, socksDomain, "github.test", u.port); code != socksSucceeded {
		t.Errorf("SOCKS5 through the relay: reply %#x", code)
	}

	// The forward address, used directly (it is in NO_PROXY), reaches
	// the internal endpoint.
	direct := &http.Transport{Proxy: nil}
	defer direct.CloseIdleConnections()
	resp, err = (&http.Client{Transport: direct, Timeout: 10 * time.Second}).Get("http://" + fwd + "/model")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 200 || b != "upstream /model" {
		t.Fatalf("GET on the forward address: %s %q", resp.Status, b)
	}
	if !slices.Contains(dl.dialled(), fwd) {
		t.Errorf("the proxy never dialled %s: %v", fwd, dl.dialled())
	}

	// A bind that fails leaves nothing bound.
	free := "127.0.0.1:" + itoa(freePort(t, "127.0.0.1"))
	if err := Relay(ctx, free, sock, []string{relay}); err == nil || !strings.Contains(err.Error(), relay) {
		t.Fatalf("Relay on a busy forward address: %v", err)
	}
	l, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("the listener of a failed Relay is still bound: %v", err)
	}
	l.Close()

	// Ending the context closes the listeners.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", relay)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the relay still accepts after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A forward whose CONNECT the proxy refuses closes the client's
// connection rather than leaving it hanging.
func TestRelayForwardRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "egress.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, &Proxy{Resolver: newResolver(nil)}, ul, Policy{Limited: true}, nil)
	fwd := "127.0.0.3:" + itoa(freePort(t, "127.0.0.3"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Relay(ctx, "127.0.0.1:0", sock, []string{fwd}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", fwd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readClosed(t, c, 5*time.Second)
}

func TestProxyEnv(t *testing.T) {
	got := ProxyEnv(RelayAddr)
	want := []string{
		"ALL_PROXY=socks5h://127.0.0.1:3128",
		"HTTPS_PROXY=http://127.0.0.1:3128",
		"HTTP_PROXY=http://127.0.0.1:3128",
		"NODE_USE_ENV_PROXY=1",
		"NO_PROXY=localhost,127.0.0.1,::1",
		"all_proxy=socks5h://127.0.0.1:3128",
		"http_proxy=http://127.0.0.1:3128",
		"https_proxy=http://127.0.0.1:3128",
		"no_proxy=localhost,127.0.0.1,::1",
		"npm_config_https_proxy=http://127.0.0.1:3128",
		"npm_config_proxy=http://127.0.0.1:3128",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ProxyEnv:\n got %q\nwant %q", got, want)
	}
}
