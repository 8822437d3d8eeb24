package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// RelayAddr is where the relay listens inside a sprite.
const RelayAddr = "127.0.0.1:3128"

// ProxyEnv is what every sprite process gets so apt, npm, pip, git, curl
// and the agent CLIs use the relay at addr ("127.0.0.1:3128"): HTTP_PROXY,
// HTTPS_PROXY, ALL_PROXY (socks5h://, so names are resolved by the proxy),
// NO_PROXY=localhost,127.0.0.1,::1 — each in upper and lower case — plus
// npm_config_proxy and npm_config_https_proxy, and NODE_USE_ENV_PROXY=1
// (Node.js 22.21 and 24.5 on make their built-in fetch and https read the
// variables above; older ones ignore it). Returned as KEY=value strings,
// sorted.
func ProxyEnv(addr string) []string {
	httpURL := "http://" + addr
	vals := map[string]string{
		"HTTP_PROXY":  httpURL,
		"HTTPS_PROXY": httpURL,
		"ALL_PROXY":   "socks5h://" + addr,
		"NO_PROXY":    "localhost,127.0.0.1,::1",
	}
	env := make([]string, 0, 2*len(vals)+2)
	for k, v := range vals {
		env = append(env, k+"="+v, strings.ToLower(k)+"="+v)
	}
	env = append(env, "npm_config_proxy="+httpURL, "npm_config_https_proxy="+httpURL, "NODE_USE_ENV_PROXY=1")
	slices.Sort(env)
	return env
}

const (
	relayDialTimeout      = 10 * time.Second
	relayHandshakeTimeout = 30 * time.Second
	maxConnectReply       = 16 << 10
)

// Relay listens on listen (e.g. "127.0.0.1:3128", inside the sprite) and
// forwards every accepted connection, raw, to the unix socket at socket.
// For each forward address ("127.0.0.1:41234") it also listens on that same
// address and tunnels each connection to it through the proxy with an HTTP
// CONNECT, so a model API on the host's loopback appears at the same
// address inside the sprite. It returns once the listeners are bound (an
// error, with nothing left bound, if any bind fails); serving continues in
// goroutines until ctx ends, which closes the listeners and every
// connection.
func Relay(ctx context.Context, listen, socket string, forwards []string) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("aod relay: listen on %s: %w", listen, err)
	}
	if err := Forward(ctx, socket, forwards); err != nil {
		l.Close()
		return err
	}
	context.AfterFunc(ctx, func() { l.Close() })
	go relayAccept(ctx, l, func(ctx context.Context) (net.Conn, []byte, error) {
		d := net.Dialer{Timeout: relayDialTimeout}
		c, err := d.DialContext(ctx, "unix", socket)
		return c, nil, err
	})
	return nil
}

// Forward is the forwards part of Relay alone, for a relay already
// listening whose forwards are known later.
func Forward(ctx context.Context, socket string, forwards []string) error {
	var lc net.ListenConfig
	var bound []net.Listener
	for _, f := range forwards {
		fl, err := lc.Listen(ctx, "tcp", f)
		if err != nil {
			for _, l := range bound {
				l.Close()
			}
			return fmt.Errorf("aod relay: listen on forward address %s: %w", f, err)
		}
		bound = append(bound, fl)
	}
	context.AfterFunc(ctx, func() {
		for _, l := range bound {
			l.Close()
		}
	})
	for i, f := range forwards {
		go relayAccept(ctx, bound[i], func(ctx context.Context) (net.Conn, []byte, error) {
			return connectThrough(ctx, socket, f)
		})
	}
	return nil
}

// relayAccept accepts on l until it is closed, splicing each connection
// with what open returns.
func relayAccept(ctx context.Context, l net.Listener, open func(context.Context) (net.Conn, []byte, error)) {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || !transientAccept(err) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go func() {
			up, pending, err := open(ctx)
			if err != nil {
				c.Close()
				return
			}
			// pending is what the proxy sent after its CONNECT reply: it
			// goes to the client, not the proxy.
			if len(pending) > 0 {
				if _, err := c.Write(pending); err != nil {
					c.Close()
					up.Close()
					return
				}
			}
			splice(ctx, c, nil, up)
		}()
	}
}

// connectThrough opens a tunnel to target through the proxy at socket with
// an HTTP CONNECT. It returns the tunnel and any bytes of it read along
// with the proxy's reply.
func connectThrough(ctx context.Context, socket, target string) (net.Conn, []byte, error) {
	d := net.Dialer{Timeout: relayDialTimeout}
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(relayHandshakeTimeout))
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		c.Close()
		return nil, nil, err
	}
	lr := &io.LimitedReader{R: c, N: maxConnectReply}
	br := bufio.NewReader(lr)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err == nil {
		_, err = tp.ReadMIMEHeader()
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("aod relay: CONNECT %s: reading the proxy's reply: %w", target, err)
	}
	proto, rest, _ := strings.Cut(status, " ")
	code, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || code != "200" {
		c.Close()
		return nil, nil, fmt.Errorf("aod relay: CONNECT %s: %s", target, status)
	}
	var pending []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		pending = append([]byte(nil), b...)
	}
	c.SetDeadline(time.Time{})
	return c, pending, nil
}
