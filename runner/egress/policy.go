// Package egress is a sprite's only way out to the network. A sprite runs in
// its own network namespace with nothing but loopback; a relay process inside
// it (Relay, RelayMain) listens on 127.0.0.1 and forwards each connection to
// a unix socket bind-mounted from the host, where the aod server's Proxy
// serves SOCKS5, HTTP CONNECT and plain HTTP forward-proxy requests and
// applies the session's Policy to every one of them.
//
// The proxy resolves every name itself, checks each resolved address, and
// dials only an address that passed, so neither a listed host that resolves
// to the host's loopback nor a DNS answer that changes between the check and
// the dial (rebinding) can reach the host's own services or its LAN.
package egress

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one --egress-allow entry: a host name (exact, lowercase, optional
// trailing dot stripped), or an IP address or CIDR. A rule lets the sprite
// reach what it names even in a limited session, and exempts it from the
// check that keeps sprites off loopback, private and link-local addresses.
type Rule struct {
	host   string       // a host-name rule; empty for an address rule
	prefix netip.Prefix // an address rule (a single IP is a /32 or /128)
}

// ParseRule parses one --egress-allow value: "api.internal.example",
// "10.1.2.3", "fd00::1" or "10.0.0.0/8". A CIDR's host bits are cleared, an
// IPv4-mapped IPv6 address is taken as the IPv4 address it maps, and a host
// name is lowercased with any trailing dot dropped. Wildcards are not
// accepted: an operator rule names exactly what it allows.
func ParseRule(s string) (Rule, error) {
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("egress allow %q: %s", s, why)
	}
	v := strings.TrimSpace(s)
	if v == "" {
		return bad("empty (want a host name, IP address or CIDR)")
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			before, _, _ := strings.Cut(v, "/")
			if _, aerr := netip.ParseAddr(before); aerr != nil {
				return bad("not a host name, IP address or CIDR")
			}
			return bad("not a valid CIDR (want e.g. 10.0.0.0/8 or fd00::/8)")
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return bad("an IPv4-mapped CIDR shorter than /96 is not supported")
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return Rule{prefix: p.Masked()}, nil
	}
	if strings.HasPrefix(v, "*") {
		return bad("wildcards are not supported; name the exact host")
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")); err == nil {
		if a.Zone() != "" {
			return bad("an IP address with a zone is not supported")
		}
		a = a.Unmap()
		return Rule{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	name, ok := normalizeName(v)
	if !ok {
		return bad("not a host name, IP address or CIDR")
	}
	return Rule{host: name}, nil
}

// String is the rule as ParseRule would accept it: the host name, the bare
// IP address of a single-address rule, or the CIDR.
func (r Rule) String() string {
	if r.host != "" {
		return r.host
	}
	if !r.prefix.IsValid() {
		return ""
	}
	if r.prefix.IsSingleIP() {
		return r.prefix.Addr().String()
	}
	return r.prefix.String()
}

// Policy is what one session's sprite may reach.
type Policy struct {
	// Limited restricts the sprite to Hosts (and Operator rules); false is
	// unrestricted, where only the address check applies.
	Limited bool
	// Hosts, for a limited policy: the session's allowed_hosts plus its
	// runtime's model API host. An entry is an exact name
	// ("api.example.com") or "*.example.com", which matches every subdomain
	// of example.com but not example.com itself.
	Hosts []string
	// Operator is the server's --egress-allow rules: always allowed, and
	// exempt from the address check.
	Operator []Rule
	// Internal is "host:port" endpoints aod itself points the sprite at (a
	// fake model API, a gateway on the host's loopback): always allowed and
	// exempt from the address check, on exactly that port.
	Internal []string
}

// String describes the policy the way refusals name it: "unrestricted", or
// "limited: allowed hosts a, b" with the operator's rules after them.
func (pol Policy) String() string {
	if !pol.Limited {
		s := "unrestricted"
		if len(pol.Operator) > 0 {
			s += "; operator allows " + listBounded(ruleStrings(pol.Operator))
		}
		return s
	}
	s := "limited: no allowed hosts"
	if len(pol.Hosts) > 0 {
		hosts := make([]string, 0, len(pol.Hosts))
		for _, h := range pol.Hosts {
			hosts = append(hosts, canonicalPattern(h))
		}
		s = "limited: allowed hosts " + listBounded(hosts)
	}
	if len(pol.Operator) > 0 {
		s += "; operator allows " + listBounded(ruleStrings(pol.Operator))
	}
	return s
}

func ruleStrings(rules []Rule) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		out = append(out, r.String())
	}
	return out
}

// canonicalPattern is a Hosts entry trimmed, lowercased and without a
// trailing dot.
func canonicalPattern(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// maxListed bounds how many entries a refusal lists.
const maxListed = 20

// listBounded joins items with ", ", listing at most maxListed of them.
func listBounded(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxListed], ", ") + fmt.Sprintf(", and %d more", len(items)-maxListed)
}

// normalizeName lowercases a host name and drops one trailing dot, and says
// whether what is left is a plausible DNS name: labels of letters, digits,
// hyphens and underscores, none empty or longer than 63 bytes, not starting
// or ending with a hyphen, 253 bytes at most, and a last label that is not
// all digits or hex (so legacy IPv4 spellings like "127.1", "2130706433"
// or "0x7f000001" are not taken for names).
func normalizeName(s string) (string, bool) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" || len(last) > 2 && last[:2] == "0x" && strings.Trim(last[2:], "0123456789abcdef") == "" {
		return "", false
	}
	return s, true
}

// normalizeHost canonicalizes the host of a request: an IP literal (with or
// without brackets) becomes its canonical unmapped form and is returned as
// addr too; a name is normalized by normalizeName.
func normalizeHost(h string) (host string, addr netip.Addr, ok bool) {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", netip.Addr{}, false
		}
		a = a.Unmap()
		return a.String(), a, true
	}
	name, ok := normalizeName(h)
	return name, netip.Addr{}, ok
}

// parsePort parses a decimal port in 1..65535, digits only.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}

// hostPort joins host and port, bracketing an IPv6 host.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// checker is a Policy compiled for fast decisions.
type checker struct {
	limited  bool
	hosts    map[string]bool // exact allowed names (and IP literals)
	suffixes []string        // ".example.com" for "*.example.com"
	opHosts  map[string]bool
	opNets   []netip.Prefix
	internal map[string]bool // canonical host:port
	desc     string          // the policy as refusals name it
	short    string          // "unrestricted" or "limited"
}

func newChecker(pol Policy) *checker {
	c := &checker{
		limited:  pol.Limited,
		hosts:    make(map[string]bool),
		opHosts:  make(map[string]bool),
		internal: make(map[string]bool),
		desc:     pol.String(),
		short:    "unrestricted",
	}
	if pol.Limited {
		c.short = "limited"
	}
	for _, h := range pol.Hosts {
		h = canonicalPattern(h)
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			if rest != "" {
				c.suffixes = append(c.suffixes, "."+rest)
			}
			continue
		}
		if n, _, ok := normalizeHost(h); ok {
			c.hosts[n] = true
		}
	}
	for _, r := range pol.Operator {
		switch {
		case r.host != "":
			c.opHosts[r.host] = true
		case r.prefix.IsValid():
			c.opNets = append(c.opNets, r.prefix)
		}
	}
	for _, ep := range pol.Internal {
		h, p, err := net.SplitHostPort(strings.TrimSpace(ep))
		if err != nil {
			continue
		}
		host, _, ok := normalizeHost(h)
		port, pok := parsePort(p)
		if ok && pok {
			c.internal[hostPort(host, port)] = true
		}
	}
	return c
}

// verdict is the policy's answer for one host:port before any resolution.
type verdict struct {
	host    string     // normalized host
	port    int        // 0 when the port was invalid
	addr    netip.Addr // set when host is an IP literal
	exempt  bool       // internal endpoint or operator host rule: no address check
	refusal string     // non-empty: refused, and why
}

// decide applies the policy to a request for host:port (host as the client
// sent it). It does no resolution: in a limited session a name that is not
// allowed is refused without ever being looked up.
func (c *checker) decide(rawHost string, port int) verdict {
	host, addr, ok := normalizeHost(rawHost)
	if !ok {
		shown := rawHost
		if len(shown) > 100 {
			shown = shown[:100] + "..."
		}
		return verdict{host: rawHost, port: port,
			refusal: fmt.Sprintf("aod egress proxy: %q is not a valid host name or IP address", shown)}
	}
	v := verdict{host: host, port: port, addr: addr}
	if port < 1 || port > 65535 {
		v.refusal = fmt.Sprintf("aod egress proxy: %s: port %d is not a valid destination port", host, port)
		return v
	}
	if c.internal[hostPort(host, port)] {
		v.exempt = true
		return v
	}
	if !addr.IsValid() && c.opHosts[host] {
		v.exempt = true
		return v
	}
	if !c.limited || c.hostAllowed(host) || addr.IsValid() && c.inOperatorNet(addr) {
		return v
	}
	v.refusal = fmt.Sprintf("aod egress proxy: %s is not allowed by this session's network policy (%s)",
		hostPort(host, port), c.desc)
	return v
}

func (c *checker) hostAllowed(host string) bool {
	if c.hosts[host] {
		return true
	}
	for _, suf := range c.suffixes {
		if len(host) > len(suf) && strings.HasSuffix(host, suf) {
			return true
		}
	}
	return false
}

func (c *checker) inOperatorNet(a netip.Addr) bool {
	for _, p := range c.opNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// addrProblem says why a sprite may not be connected to a (already
// unmapped), or "" when it may: an address inside an operator rule always
// may; otherwise loopback, link-local, private, CGNAT, unspecified,
// multicast, broadcast and reserved addresses, NAT64 forms of those, and the
// host's own addresses may not.
func (c *checker) addrProblem(a netip.Addr, hostAddrs []netip.Addr) string {
	a = a.Unmap()
	if c.inOperatorNet(a) {
		return ""
	}
	if what := classify(a); what != "" {
		return what
	}
	for _, h := range hostAddrs {
		if h.Unmap() == a {
			return "address of the aod host"
		}
	}
	return ""
}

type addrClass struct {
	prefix netip.Prefix
	what   string
}

// forbidden lists the address ranges a sprite may not reach unless an
// operator rule says so; the first match names the refusal.
var forbidden = func() []addrClass {
	table := []struct{ cidr, what string }{
		{"0.0.0.0/8", "unspecified address"},
		{"10.0.0.0/8", "private address"},
		{"100.64.0.0/10", "carrier-grade NAT address"},
		{"127.0.0.0/8", "loopback address"},
		{"169.254.0.0/16", "link-local address"},
		{"172.16.0.0/12", "private address"},
		{"192.168.0.0/16", "private address"},
		{"224.0.0.0/4", "multicast address"},
		{"255.255.255.255/32", "broadcast address"},
		{"240.0.0.0/4", "reserved address"},
		{"::/128", "unspecified address"},
		{"::1/128", "loopback address"},
		{"fe80::/10", "link-local address"},
		{"fec0::/10", "site-local address"},
		{"fc00::/7", "private address"},
		{"ff00::/8", "multicast address"},
	}
	out := make([]addrClass, 0, len(table))
	for _, e := range table {
		out = append(out, addrClass{netip.MustParsePrefix(e.cidr), e.what})
	}
	return out
}()

// nat64 is the well-known NAT64 prefix, whose addresses embed an IPv4
// address a translator on the path would connect to.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// classify names a's forbidden class, or returns "".
func classify(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid address"
	}
	if a.Zone() != "" {
		a = a.WithZone("")
	}
	for _, f := range forbidden {
		if f.prefix.Contains(a) {
			return f.what
		}
	}
	if nat64.Contains(a) {
		b := a.As16()
		if what := classify(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); what != "" {
			return "NAT64 form of a " + what
		}
	}
	return ""
}

// addrRefusal is the reason a request for host:port is refused because of
// the address it resolved to (or is).
func (c *checker) addrRefusal(v verdict, a netip.Addr, what string) string {
	var because string
	if v.addr.IsValid() {
		because = what
	} else {
		because = fmt.Sprintf("it resolves to %s, %s %s", a, article(what), what)
	}
	return fmt.Sprintf("aod egress proxy: %s is refused: %s (policy %s; an operator can allow it with --egress-allow)",
		hostPort(v.host, v.port), because, c.short)
}

func article(s string) string {
	if s != "" && strings.ContainsRune("aeiou", rune(s[0])) {
		return "an"
	}
	return "a"
}

// NormalHost is a host as policies compare it: lower case, no trailing
// dot; a URL or host:port is cut down to its host. "" when nothing is left.
func NormalHost(h string) string {
	h = strings.TrimSpace(h)
	if i := strings.Index(h, "://"); i >= 0 {
		h = h[i+3:]
	}
	if i := strings.IndexAny(h, "/?#"); i >= 0 {
		h = h[:i]
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return canonicalPattern(strings.Trim(h, "[]"))
}

// AddressRefusal says why aod itself may not connect to address a, which
// host resolved to, on a user's behalf (a webhook), "" when it may: the
// rule sprites' egress follows, with the operator's --egress-allow rules
// (a rule naming host, or a range holding a) as the only exceptions.
func AddressRefusal(operator []Rule, host string, a netip.Addr) string {
	host = NormalHost(host)
	for _, r := range operator {
		if r.host != "" && r.host == host {
			return ""
		}
	}
	return newChecker(Policy{Operator: operator}).addrProblem(a, nil)
}
