package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/sprite"
)

// A bubblewrap sprite has a network namespace of its own with only
// loopback. Its one way out is aod's egress proxy (runner/egress), served
// by the server for each command on a unix socket bound into the sprite at
// egressSocket; the sprite's init relays 127.0.0.1:3128 (egress.RelayAddr)
// to it, and every process is told to use that proxy.
const egressSocket = "/aod/egress.sock"

// Recorder is told of every connection a sprite's processes asked the
// proxy for.
type Recorder func(sprite, host string, port int, allowed bool)

// egressNet is the backend's side of sprite networking.
type egressNet struct {
	proxy  *egress.Proxy
	allow  []egress.Rule  // --egress-allow
	record Recorder       // nil: nothing kept
	creds  GitCredentials // nil: sprites' git gets no tokens from aod
	dir    string         // where the per-command sockets are made
	seq    atomic.Uint64
}

// socketDir is where the proxies' sockets go: beside the sprites when the
// path is short enough for a unix socket (108 bytes), else a private
// temporary directory.
func socketDir(root string) (string, error) {
	dir := filepath.Join(root, ".egress")
	if len(dir)+24 > 100 {
		return os.MkdirTemp("", "aod-egress-")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// serving is one command's proxy.
type serving struct {
	path   string
	cancel context.CancelFunc // nil until started
	ln     net.Listener
}

func (s *serving) close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.ln.Close()
	os.Remove(s.path)
}

// serve starts the proxy for one command of sprite name under policy n.
func (e *egressNet) serve(name string, n sprite.Network) (*serving, error) {
	s, err := e.listen()
	if err != nil {
		return nil, err
	}
	e.start(s, name, n)
	return s, nil
}

// listen makes a proxy socket that accepts nothing yet: connections wait
// in its backlog until start (a warm sprite's socket exists before its
// session, and so its policy, is known).
func (e *egressNet) listen() (*serving, error) {
	path := filepath.Join(e.dir, strconv.FormatUint(e.seq.Add(1), 10)+".sock")
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	// The sprite's root is an unprivileged uid: the socket must let it
	// connect. Only the bind inside the sprite leads to it (its directory
	// is the server's, mode 0700).
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return &serving{path: path, ln: ln}, nil
}

// start serves s for sprite name under policy n.
func (e *egressNet) start(s *serving, name string, n sprite.Network) {
	pol := egress.Policy{Limited: n.Limited, Hosts: n.Hosts, Operator: e.allow, Internal: n.Models}
	var rec egress.Recorder
	if e.record != nil {
		rec = recorderFunc(func(host string, port int, allowed bool) { e.record(name, host, port, allowed) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go e.proxy.Serve(ctx, limitListener(s.ln, maxProxyConns), pol, rec, e.credentialHandler(name))
}

type recorderFunc func(host string, port int, allowed bool)

func (f recorderFunc) Record(host string, port int, allowed bool) { f(host, port, allowed) }

// forwards are the model endpoints on the host's loopback: the relay makes
// each appear at the same address inside the sprite.
func forwards(n sprite.Network) []string {
	var out []string
	for _, m := range n.Models {
		host, _, err := net.SplitHostPort(m)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(host); (err == nil && a.IsLoopback()) || host == "localhost" {
			out = append(out, m)
		}
	}
	return out
}

// maxProxyConns bounds the connections one command holds open through the
// proxy at once: past it, new ones wait in the socket's backlog, so a
// sprite cannot make the server hold thousands of sockets.
const maxProxyConns = 256

// limitListener lets at most n accepted connections be open at once.
func limitListener(l net.Listener, n int) net.Listener {
	return &limitedListener{Listener: l, slots: make(chan struct{}, n)}
}

type limitedListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite keeps half-closes working through the wrapper.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
