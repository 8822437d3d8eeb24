package egress

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver resolves names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Recorder is told of every connection asked for, allowed or refused.
type Recorder interface {
	Record(host string, port int, allowed bool)
}

// Proxy decides and carries a sprite's connections.
type Proxy struct {
	Resolver  Resolver                                                             // nil: net.DefaultResolver
	Dial      func(ctx context.Context, network, address string) (net.Conn, error) // nil: a net.Dialer; address is always ip:port
	HostAddrs func() []netip.Addr                                                  // the host's own addresses; nil: its interfaces'
	Logger    *slog.Logger

	ownMu   sync.Mutex
	own     []netip.Addr
	ownTime time.Time
}

// Bounds of a client's first request.
const (
	headerTimeout  = 30 * time.Second
	maxHeaderBytes = 64 << 10
	dialTimeout    = 30 * time.Second
)

// Serve accepts on l until l is closed, applying pol to every connection
// and telling rec (which may be nil). When ctx ends every connection it
// carries is closed.
func (p *Proxy) Serve(ctx context.Context, l net.Listener, pol Policy, rec Recorder) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(cctx, func() { c.Close() })
			defer stop()
			defer c.Close()
			p.handle(cctx, c, pol, rec)
		}()
	}
}

func (p *Proxy) handle(ctx context.Context, c net.Conn, pol Policy, rec Recorder) {
	c.SetReadDeadline(time.Now().Add(headerTimeout))
	lim := &budget{r: c, left: maxHeaderBytes}
	br := bufio.NewReaderSize(lim, 4096)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 5 {
		p.socks(ctx, c, br, lim, pol, rec)
		return
	}
	p.http(ctx, c, br, lim, pol, rec)
}

// target checks host:port against the policy, resolves it and checks
// every address; it returns the address to dial, or the reason for refusal
// (and whether the name did not resolve).
func (p *Proxy) target(ctx context.Context, pol Policy, host string, port int) (netip.AddrPort, string, bool) {
	d := pol.decide(host, port)
	if !d.allowed {
		return netip.AddrPort{}, d.reason, false
	}
	host = NormalHost(host)
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		r := p.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		rctx, cancel := context.WithTimeout(ctx, dialTimeout)
		addrs, err = r.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil || len(addrs) == 0 {
			return netip.AddrPort{}, fmt.Sprintf("aod egress proxy: cannot resolve %s", truncate(host, 253)), true
		}
	}
	if d.internal || d.operator {
		return netip.AddrPortFrom(addrs[0].Unmap(), uint16(port)), "", false
	}
	// Every address the name has must pass: one that does not is a name
	// pointed at the host's network (DNS rebinding), refused outright.
	own := p.ownAddrs()
	for _, a := range addrs {
		if why := pol.forbidden(a, own); why != "" {
			return netip.AddrPort{}, fmt.Sprintf("aod egress proxy: %s is refused: %s %s (policy %s; an operator can allow it with --egress-allow)",
				net.JoinHostPort(truncate(host, 253), strconv.Itoa(port)), why, a.Unmap(), pol.name()), false
		}
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(port)), "", false
}

func (p *Proxy) ownAddrs() []netip.Addr {
	if p.HostAddrs != nil {
		return p.HostAddrs()
	}
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	if time.Since(p.ownTime) > 10*time.Second {
		p.own = p.own[:0]
		if ifs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifs {
				if n, ok := ia.(*net.IPNet); ok {
					if a, ok := netip.AddrFromSlice(n.IP); ok {
						p.own = append(p.own, a.Unmap())
					}
				}
			}
		}
		p.ownTime = time.Now()
	}
	return p.own
}

func (p *Proxy) dial(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if p.Dial != nil {
		return p.Dial(dctx, "tcp", ap.String())
	}
	var d net.Dialer
	return d.DialContext(dctx, "tcp", ap.String())
}

// open decides, records and dials one connection.
func (p *Proxy) open(ctx context.Context, pol Policy, rec Recorder, host string, port int) (net.Conn, string, bool) {
	ap, reason, unresolved := p.target(ctx, pol, host, port)
	if rec != nil {
		rec.Record(NormalHost(host), port, reason == "")
	}
	if reason != "" {
		return nil, reason, unresolved
	}
	up, err := p.dial(ctx, ap)
	if err != nil {
		return nil, fmt.Sprintf("aod egress proxy: cannot connect to %s: %v", net.JoinHostPort(truncate(NormalHost(host), 253), strconv.Itoa(port)), err), true
	}
	return up, "", false
}

// splice copies both ways until both directions end.
func splice(a, b net.Conn, abuf *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var src io.Reader = a
		if abuf != nil {
			src = abuf
		}
		io.Copy(b, src)
		closeWrite(b)
	}()
	io.Copy(a, b)
	closeWrite(a)
	wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

// http serves CONNECT and absolute-form forward requests on c.
func (p *Proxy) http(ctx context.Context, c net.Conn, br *bufio.Reader, lim *budget, pol Policy, rec Recorder) {
	for {
		lim.left = maxHeaderBytes + int64(br.Buffered())
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, errHeaderTooLarge) {
				respond(c, http.StatusRequestHeaderFieldsTooLarge, "aod egress proxy: request header too large")
			}
			return
		}
		lim.left = unlimited
		c.SetReadDeadline(time.Time{})
		if req.Method == http.MethodConnect {
			host, port, ok := splitPort(req.Host, 0)
			if !ok {
				respond(c, http.StatusBadRequest, "aod egress proxy: CONNECT needs host:port")
				return
			}
			up, reason, unresolved := p.open(ctx, pol, rec, host, port)
			if up == nil {
				respond(c, refusalStatus(unresolved), reason)
				return
			}
			defer up.Close()
			io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			splice(c, up, br)
			return
		}
		if req.URL == nil || !req.URL.IsAbs() || req.URL.Scheme != "http" {
			respond(c, http.StatusBadRequest, "aod egress proxy: this is a proxy; send absolute http:// URLs or CONNECT")
			return
		}
		if !p.forward(ctx, c, req, pol, rec) {
			return
		}
		c.SetReadDeadline(time.Now().Add(headerTimeout))
	}
}

var errHeaderTooLarge = errors.New("header too large")

// budget limits how much a client may send before its request head is
// read; lifted for bodies and tunnels.
type budget struct {
	r    io.Reader
	left int64
}

func (b *budget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

const unlimited = 1 << 62

// forward carries one absolute-form request; false ends the connection.
func (p *Proxy) forward(ctx context.Context, c net.Conn, req *http.Request, pol Policy, rec Recorder) bool {
	host, port, ok := splitPort(req.URL.Host, 80)
	if !ok {
		respond(c, http.StatusBadRequest, "aod egress proxy: bad host in URL")
		return false
	}
	up, reason, unresolved := p.open(ctx, pol, rec, host, port)
	if up == nil {
		respond(c, refusalStatus(unresolved), reason)
		return false
	}
	defer up.Close()
	for _, h := range []string{"Proxy-Connection", "Proxy-Authorization", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		req.Header.Del(h)
	}
	req.Header.Set("Connection", "close")
	req.RequestURI = ""
	if err := req.Write(up); err != nil {
		respond(c, http.StatusBadGateway, "aod egress proxy: "+err.Error())
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(up), req)
	if err != nil {
		respond(c, http.StatusBadGateway, "aod egress proxy: bad response from upstream")
		return false
	}
	defer resp.Body.Close()
	keep := !req.Close
	resp.Header.Del("Connection")
	resp.Header.Del("Keep-Alive")
	resp.Close = !keep
	if err := resp.Write(c); err != nil {
		return false
	}
	return keep
}

func refusalStatus(unresolved bool) int {
	if unresolved {
		return http.StatusBadGateway
	}
	return http.StatusForbidden
}

func respond(c net.Conn, status int, body string) {
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body)+1, body+"\n")
}

// splitPort splits host[:port], defaulting the port (0: required).
func splitPort(hostport string, def int) (string, int, bool) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		if def == 0 || strings.Contains(strings.Trim(hostport, "[]"), ":") && !strings.HasPrefix(hostport, "[") {
			return "", 0, false
		}
		return strings.Trim(hostport, "[]"), def, hostport != ""
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 || host == "" {
		return "", 0, false
	}
	return host, port, true
}

// SOCKS5 replies (RFC 1928).
const (
	socksOK          = 0
	socksNotAllowed  = 2
	socksUnreachable = 4
	socksRefused     = 5
	socksNoCommand   = 7
	socksNoAddrType  = 8
)

// socks serves one SOCKS5 CONNECT (no authentication).
func (p *Proxy) socks(ctx context.Context, c net.Conn, br *bufio.Reader, lim *budget, pol Policy, rec Recorder) {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	if !strings.ContainsRune(string(methods), 0) {
		c.Write([]byte{5, 0xff})
		return
	}
	c.Write([]byte{5, 0})
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[0] != 5 {
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		b := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		a, _ := netip.AddrFromSlice(b)
		host = a.Unmap().String()
	case 3:
		n, err := br.ReadByte()
		if err != nil {
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return
		}
		host = string(b)
	default:
		socksReply(c, socksNoAddrType)
		return
	}
	var pb [2]byte
	if _, err := io.ReadFull(br, pb[:]); err != nil {
		return
	}
	port := int(binary.BigEndian.Uint16(pb[:]))
	if req[1] != 1 {
		socksReply(c, socksNoCommand)
		return
	}
	c.SetReadDeadline(time.Time{})
	lim.left = unlimited
	up, reason, unresolved := p.open(ctx, pol, rec, host, port)
	if up == nil {
		code := byte(socksNotAllowed)
		if unresolved {
			code = socksUnreachable
			if strings.Contains(reason, "cannot connect") {
				code = socksRefused
			}
		}
		if p.Logger != nil {
			p.Logger.Debug("egress refused", "reason", reason)
		}
		socksReply(c, code)
		return
	}
	defer up.Close()
	socksReply(c, socksOK)
	splice(c, up, br)
}

func socksReply(c net.Conn, code byte) {
	c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0})
}
