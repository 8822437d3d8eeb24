// Package egress is the way out of a sprite's network namespace: a proxy
// in the server (HTTP forward, CONNECT and SOCKS5 on one listener) that
// decides every connection by the session's policy and the operator's
// allow list, and the relay the sprite's init runs inside (a TCP listener
// on 127.0.0.1 forwarding to the proxy's unix socket).
package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one --egress-allow entry: a host name, or an IP address or CIDR.
type Rule struct {
	host   string
	prefix netip.Prefix
}

// ParseRule reads an --egress-allow entry.
func ParseRule(s string) (Rule, error) {
	t := strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(t); err == nil {
		return Rule{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(t); err == nil {
		a = a.Unmap()
		return Rule{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if h := strings.TrimSuffix(strings.ToLower(t), "."); validName(h) && !strings.Contains(h, "*") {
		return Rule{host: h}, nil
	}
	return Rule{}, fmt.Errorf("egress allow %q: not a host name, IP address or CIDR", truncate(s, 100))
}

func (r Rule) String() string {
	if r.host != "" {
		return r.host
	}
	return r.prefix.String()
}

// NormalHost is a host as policies compare it: lower case, no trailing
// dot; a URL or host:port is cut down to its host. "" when nothing is left.
func NormalHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexAny(h, "/?#"); i >= 0 {
		h = h[:i]
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	return h
}

func validName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '*') {
			return false
		}
	}
	return h != ""
}

// Policy is what one sprite may reach.
type Policy struct {
	Limited  bool     // only Hosts, Operator and Internal; else any public host
	Hosts    []string // limited: exact names or "*.domain" (subdomains, not the apex)
	Operator []Rule   // always allowed, and exempt from the address check
	Internal []string // host:port endpoints aod points the sprite at: always allowed
}

// decision is what the policy says of a host before any address is known.
type decision struct {
	allowed  bool
	internal bool // an Internal endpoint: no address check
	operator bool // named by an operator host rule: no address check
	reason   string
}

func (p Policy) decide(host string, port int) decision {
	host = NormalHost(host)
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	for _, in := range p.Internal {
		if h, pt, err := net.SplitHostPort(in); err == nil && net.JoinHostPort(NormalHost(h), pt) == hp {
			return decision{allowed: true, internal: true}
		}
	}
	for _, r := range p.Operator {
		if r.host != "" && matchHost(r.host, host) {
			return decision{allowed: true, operator: true}
		}
	}
	if !p.Limited {
		return decision{allowed: true}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		for _, r := range p.Operator {
			if r.host == "" && r.prefix.Contains(a.Unmap()) {
				return decision{allowed: true}
			}
		}
	}
	for _, h := range p.Hosts {
		if matchHost(NormalHost(h), host) {
			return decision{allowed: true}
		}
	}
	return decision{reason: fmt.Sprintf("aod egress proxy: %s is not allowed by this session's network policy (limited: allowed hosts %s)", hp, listHosts(p.Hosts))}
}

// matchHost: pattern is an exact name or "*.domain" for its subdomains.
func matchHost(pattern, host string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(host, "."+rest)
	}
	return pattern == host
}

func listHosts(hosts []string) string {
	if len(hosts) == 0 {
		return "(none)"
	}
	const max = 20
	if len(hosts) <= max {
		return truncate(strings.Join(hosts, ", "), 2000)
	}
	return truncate(strings.Join(hosts[:max], ", "), 2000) + fmt.Sprintf(" and %d more", len(hosts)-max)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// forbidden says why an address may not be dialled ("" when it may): the
// host's loopback and link-local (cloud metadata) addresses, private
// ranges and the host's own addresses stay out of a sprite's reach unless
// an operator rule covers the address.
func (p Policy) forbidden(a netip.Addr, own []netip.Addr) string {
	a = a.Unmap()
	for _, r := range p.Operator {
		if r.host == "" && r.prefix.Contains(a) {
			return ""
		}
	}
	switch {
	case a.IsLoopback():
		return "loopback address"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local address"
	case a.IsPrivate() || cgnat.Contains(a):
		return "private address"
	case a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || a == broadcast:
		return "not a unicast address"
	}
	for _, o := range own {
		if o.Unmap() == a {
			return "one of this host's own addresses"
		}
	}
	return ""
}

var (
	cgnat     = netip.MustParsePrefix("100.64.0.0/10")
	broadcast = netip.MustParseAddr("255.255.255.255")
)

func (p Policy) name() string {
	if p.Limited {
		return "limited"
	}
	return "unrestricted"
}
