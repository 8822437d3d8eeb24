package egress

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// SOCKS5 (RFC 1928), the subset the agent CLIs and curl's socks5h:// use:
// no authentication, CONNECT only.
const (
	socksVersion = 0x05

	socksNoAuth       = 0x00
	socksNoAcceptable = 0xff

	socksConnect = 0x01

	socksIPv4   = 0x01
	socksDomain = 0x03
	socksIPv6   = 0x04

	socksSucceeded          = 0x00
	socksNotAllowed         = 0x02
	socksNetUnreachable     = 0x03
	socksHostUnreachable    = 0x04
	socksConnRefused        = 0x05
	socksCmdNotSupported    = 0x07
	socksAddrTypeNotSupport = 0x08
)

// serveSOCKS runs a SOCKS5 handshake on conn, whose version byte has been
// read, and splices the tunnel it asks for. The caller closes conn.
func (s *session) serveSOCKS(conn net.Conn) {
	// Greeting: NMETHODS, METHODS.
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return
	}
	methods := make([]byte, n[0])
	if _, err := io.ReadFull(conn, methods); err != nil {
		return
	}
	noAuth := false
	for _, m := range methods {
		noAuth = noAuth || m == socksNoAuth
	}
	if !noAuth {
		conn.Write([]byte{socksVersion, socksNoAcceptable})
		return
	}
	if _, err := conn.Write([]byte{socksVersion, socksNoAuth}); err != nil {
		return
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	var req [4]byte
	if _, err := io.ReadFull(conn, req[:]); err != nil || req[0] != socksVersion {
		return
	}
	var host string
	switch req[3] {
	case socksIPv4:
		var b [4]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			return
		}
		host = netip.AddrFrom4(b).String()
	case socksIPv6:
		var b [16]byte
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			return
		}
		host = netip.AddrFrom16(b).String()
	case socksDomain:
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(conn, b); err != nil {
			return
		}
		host = string(b)
	default:
		socksReply(conn, socksAddrTypeNotSupport, nil)
		return
	}
	var pb [2]byte
	if _, err := io.ReadFull(conn, pb[:]); err != nil {
		return
	}
	port := int(pb[0])<<8 | int(pb[1])
	if req[1] != socksConnect {
		socksReply(conn, socksCmdNotSupported, nil)
		return
	}

	t, err := s.prepare(s.ctx, host, port, "SOCKS5", true)
	if err != nil {
		var refused *refusedError
		if errors.As(err, &refused) {
			socksReply(conn, socksNotAllowed, nil)
		} else {
			socksReply(conn, socksHostUnreachable, nil)
		}
		return
	}
	up, err := s.dial(s.ctx, t)
	if err != nil {
		s.log.Debug("egress dial failed", "target", t.String(), "via", "SOCKS5", "err", err)
		socksReply(conn, socksDialCode(err), nil)
		return
	}
	if err := socksReply(conn, socksSucceeded, up.LocalAddr()); err != nil {
		up.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	splice(s.ctx, conn, nil, up)
}

// socksDialCode is the reply code for a failed dial.
func socksDialCode(err error) byte {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return socksConnRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return socksNetUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.As(err, &ne) && ne.Timeout():
		return socksHostUnreachable
	}
	return socksConnRefused
}

// socksReply writes a reply with the bound address bound (0.0.0.0:0 when
// bound is nil or not a TCP address).
func socksReply(conn net.Conn, code byte, bound net.Addr) error {
	ap := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if ta, ok := bound.(*net.TCPAddr); ok {
		if a := ta.AddrPort(); a.Addr().IsValid() {
			ap = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		}
	}
	b := []byte{socksVersion, code, 0x00}
	if ap.Addr().Is4() {
		a := ap.Addr().As4()
		b = append(append(b, socksIPv4), a[:]...)
	} else {
		a := ap.Addr().As16()
		b = append(append(b, socksIPv6), a[:]...)
	}
	b = append(b, byte(ap.Port()>>8), byte(ap.Port()))
	_, err := conn.Write(b)
	return err
}
