package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Resolver looks names up for the proxy; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Recorder hears about every connection or request the proxy decided on:
// once per SOCKS5 or HTTP CONNECT connection and once per forwarded HTTP
// request. allowed reports the policy's answer (including the address
// check); an allowed attempt may still fail to resolve or connect.
type Recorder interface {
	Record(host string, port int, allowed bool)
}

// Proxy is aod's egress proxy. The zero value is ready to use; one Proxy
// may serve any number of listeners at once, each with its own Policy. A
// Proxy must not be copied after first use.
type Proxy struct {
	// Resolver resolves every name the proxy dials; nil: net.DefaultResolver.
	Resolver Resolver
	// Dial connects to a checked address, always "ip:port"; nil: a
	// net.Dialer with a 30 s timeout.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// HostAddrs is the host's own addresses, which a sprite may not reach
	// unless an operator rule says so; nil: the addresses of the host's
	// interfaces (net.InterfaceAddrs), cached for a few seconds.
	HostAddrs func() []netip.Addr
	// Logger gets a line per decision (refusals at Info, the rest at Debug);
	// nil: discard.
	Logger *slog.Logger
	// Timeout bounds how long a new connection may take to send its SOCKS5
	// handshake or its first request's header; zero: DefaultTimeout.
	Timeout time.Duration

	mu          sync.Mutex
	hostCache   []netip.Addr
	hostCacheAt time.Time
}

// DefaultTimeout is the handshake and header read timeout a zero
// Proxy.Timeout takes.
const DefaultTimeout = 30 * time.Second

const (
	maxHeaderBytes = 64 << 10
	dialTimeout    = 30 * time.Second
	resolveTimeout = 15 * time.Second
	hostAddrsTTL   = 10 * time.Second
	httpIdle       = 2 * time.Minute  // a client connection between requests
	upstreamIdle   = 90 * time.Second // an idle forward-proxy upstream connection
)

// refusedError is a request the policy refused; its text is the reason a
// client is shown.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return e.reason }

// resolveError is a name that did not resolve.
type resolveError struct {
	host string
	err  error
}

func (e *resolveError) Error() string {
	return fmt.Sprintf("aod egress proxy: cannot resolve %s: %v", e.host, e.err)
}

func (e *resolveError) Unwrap() error { return e.err }

// dialError is a checked target none of whose addresses answered.
type dialError struct {
	target string
	err    error
}

func (e *dialError) Error() string {
	return fmt.Sprintf("aod egress proxy: cannot connect to %s: %v", e.target, e.err)
}

func (e *dialError) Unwrap() error { return e.err }

// target is a request the policy allowed: the addresses it may be dialled
// at, every one of them checked.
type target struct {
	host  string
	port  int
	addrs []netip.Addr
}

func (t *target) String() string { return hostPort(t.host, t.port) }

// session is one Serve call's state.
type session struct {
	p         *Proxy
	ctx       context.Context
	c         *checker
	rec       Recorder
	own       http.Handler // the requests to the proxy itself; nil: none
	log       *slog.Logger
	timeout   time.Duration
	transport *http.Transport
}

// Serve accepts on l until l is closed or ctx ends, applying pol to every
// connection and reporting each decision to rec (rec may be nil). Each
// connection speaks SOCKS5, HTTP CONNECT or plain HTTP forward-proxy
// requests, told apart by its first byte. An HTTP request in origin form
// ("POST /path", no scheme or host) is addressed to the proxy itself, not
// through it: own serves those (services aod gives the listener's one
// sprite, such as its git credential helper), and nil refuses them. Serve
// returns nil once l is
// closed (connections already accepted carry on) or ctx ends (Serve closes
// l, and every connection and tunnel it opened is closed too). Transient
// Accept errors (out of file descriptors and the like) are retried with a
// back-off; any other is returned.
func (p *Proxy) Serve(ctx context.Context, l net.Listener, pol Policy, rec Recorder, own http.Handler) error {
	s := &session{p: p, ctx: ctx, c: newChecker(pol), rec: rec, own: own, log: p.Logger, timeout: p.Timeout}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	s.transport = &http.Transport{
		Proxy:                  nil, // never the environment's proxy
		DialContext:            s.transportDial,
		DisableCompression:     true,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        upstreamIdle,
		MaxResponseHeaderBytes: 1 << 20,
	}
	stopClose := context.AfterFunc(ctx, func() { l.Close() })
	defer stopClose()

	hl := newChanListener(l.Addr())
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.timeout,
		IdleTimeout:       httpIdle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go srv.Serve(hl) //nolint:errcheck // returns once hl is closed

	var (
		wg     sync.WaitGroup
		retErr error
		delay  time.Duration
	)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			if transientAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("egress proxy: accept", "err", err, "retry_in", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			retErr = err
			break
		}
		delay = 0
		wg.Add(1)
		go s.serveConn(conn, hl, wg.Done)
	}
	hl.Close()
	// Once every connection is gone (or ctx ends, which closes them), the
	// forward proxy's idle upstream connections go too.
	go func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		s.transport.CloseIdleConnections()
	}()
	return retErr
}

// transientAccept reports whether an Accept error is worth retrying.
func transientAccept(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveConn sniffs a new connection's first byte and hands it to the SOCKS5
// handshake or to the HTTP server. done is called once the connection is
// closed, whoever closes it.
func (s *session) serveConn(conn net.Conn, hl *chanListener, done func()) {
	cc := &clientConn{Conn: conn}
	stop := context.AfterFunc(s.ctx, func() { conn.Close() })
	cc.onClose = func() { stop(); done() }

	conn.SetReadDeadline(time.Now().Add(s.timeout))
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		cc.Close()
		return
	}
	switch b[0] {
	case socksVersion:
		defer cc.Close()
		s.serveSOCKS(conn)
	case 0x04:
		// SOCKS4: "request rejected", so the client says something useful.
		conn.Write([]byte{0x00, 0x5b, 0, 0, 0, 0, 0, 0})
		cc.Close()
	default:
		conn.SetReadDeadline(time.Time{})
		cc.first = b[:]
		if !hl.hand(cc) {
			cc.Close()
		}
	}
}

// prepare applies the policy to a request for rawHost:port: it refuses what
// the policy does not allow, resolves a name, and keeps only the addresses
// that pass the address check. record says whether to tell the Recorder.
func (s *session) prepare(ctx context.Context, rawHost string, port int, via string, record bool) (*target, error) {
	v := s.c.decide(rawHost, port)
	if v.refusal != "" {
		s.note(v.host, port, false, via, v.refusal, record)
		return nil, &refusedError{v.refusal}
	}
	addrs, err := s.resolve(ctx, v)
	if err != nil {
		s.note(v.host, port, true, via, err.Error(), record)
		return nil, err
	}
	t := &target{host: v.host, port: port}
	if v.exempt {
		t.addrs = addrs
		s.note(v.host, port, true, via, "", record)
		return t, nil
	}
	hostAddrs := s.p.hostAddrs()
	var refusal string
	for _, a := range addrs {
		if what := s.c.addrProblem(a, hostAddrs); what != "" {
			if refusal == "" {
				refusal = s.c.addrRefusal(v, a, what)
			}
			continue
		}
		t.addrs = append(t.addrs, a)
	}
	if len(t.addrs) == 0 {
		s.note(v.host, port, false, via, refusal, record)
		return nil, &refusedError{refusal}
	}
	s.note(v.host, port, true, via, "", record)
	return t, nil
}

func (s *session) note(host string, port int, allowed bool, via, reason string, record bool) {
	if !record {
		return
	}
	if s.rec != nil {
		s.rec.Record(host, port, allowed)
	}
	if allowed {
		s.log.Debug("egress allowed", "host", host, "port", port, "via", via, "note", reason)
	} else {
		s.log.Info("egress refused", "host", host, "port", port, "via", via, "reason", reason)
	}
}

// resolve returns the addresses v's host is to be dialled at, unmapped.
func (s *session) resolve(ctx context.Context, v verdict) ([]netip.Addr, error) {
	if v.addr.IsValid() {
		return []netip.Addr{v.addr}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	var r Resolver = net.DefaultResolver
	if s.p.Resolver != nil {
		r = s.p.Resolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", v.host)
	if err != nil {
		return nil, &resolveError{host: v.host, err: err}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, a.Unmap())
		}
	}
	if len(out) == 0 {
		return nil, &resolveError{host: v.host, err: errors.New("no addresses")}
	}
	return out, nil
}

// dial connects to t at the first of its checked addresses that answers.
// It never dials a name.
func (s *session) dial(ctx context.Context, t *target) (net.Conn, error) {
	dial := s.p.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: dialTimeout}
		dial = d.DialContext
	}
	var last error
	for _, a := range t.addrs {
		c, err := dial(ctx, "tcp", netip.AddrPortFrom(a, uint16(t.port)).String())
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	if last == nil {
		last = errors.New("no address to dial")
	}
	return nil, &dialError{target: t.String(), err: last}
}

// hostAddrs is the host's own addresses.
func (p *Proxy) hostAddrs() []netip.Addr {
	if p.HostAddrs != nil {
		return p.HostAddrs()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.hostCacheAt.IsZero() && time.Since(p.hostCacheAt) < hostAddrsTTL {
		return p.hostCache
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return p.hostCache // the last good answer, if any
	}
	addrs := make([]netip.Addr, 0, len(ifaddrs))
	for _, ia := range ifaddrs {
		var ip net.IP
		switch v := ia.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
		}
	}
	p.hostCache, p.hostCacheAt = addrs, time.Now()
	return addrs
}

// splice copies client to up and up to client until both directions end,
// half-closing each side as its peer finishes sending, then closes both.
// pending is client data already read (sent to up first). Both are closed
// as soon as ctx ends.
func splice(ctx context.Context, client net.Conn, pending []byte, up net.Conn) {
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		up.Close()
	})
	defer stop()
	var src io.Reader = client
	if len(pending) > 0 {
		src = io.MultiReader(bytes.NewReader(pending), client)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(up, src, client)
	}()
	pipe(client, up, up)
	<-done
	client.Close()
	up.Close()
}

// pipe copies src to dst, then half-closes dst; on an error, or when dst
// cannot be half-closed, it closes both connections so the other direction
// ends too.
func pipe(dst net.Conn, src io.Reader, srcConn net.Conn) {
	if _, err := io.Copy(dst, src); err != nil || closeWrite(dst) != nil {
		dst.Close()
		srcConn.Close()
	}
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// clientConn is an accepted connection on its way to the HTTP server: it
// replays the sniffed first byte and reports its closing once.
type clientConn struct {
	net.Conn
	first   []byte
	once    sync.Once
	onClose func()
}

func (c *clientConn) Read(b []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(b, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *clientConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		err = c.Conn.Close()
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

func (c *clientConn) CloseWrite() error { return closeWrite(c.Conn) }

// chanListener is the HTTP server's listener: Serve hands it the
// connections it sniffed as HTTP.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// hand gives c to the HTTP server; false when the listener is closed.
func (l *chanListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
