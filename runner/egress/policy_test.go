package egress

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	good := map[string]string{
		"github.com":          "github.com",
		"API.Example.COM.":    "api.example.com",
		" internal.corp ":     "internal.corp",
		"my_host.local":       "my_host.local",
		"localhost":           "localhost",
		"10.1.2.3":            "10.1.2.3",
		"10.1.2.3/8":          "10.0.0.0/8",
		"192.168.0.0/16":      "192.168.0.0/16",
		"127.0.0.2/32":        "127.0.0.2",
		"::1":                 "::1",
		"[fd00::1]":           "fd00::1",
		"fd00::/8":            "fd00::/8",
		"::ffff:127.0.0.1":    "127.0.0.1",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
	}
	for in, want := range good {
		r, err := ParseRule(in)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", in, err)
			continue
		}
		if got := r.String(); got != want {
			t.Errorf("ParseRule(%q) = %q, want %q", in, got, want)
		}
	}

	bad := map[string]string{
		"x y":                            `egress allow "x y": not a host name, IP address or CIDR`,
		"":                               `egress allow "": empty`,
		"10.0.0.0/33":                    "not a valid CIDR",
		"example.com/8":                  "not a host name, IP address or CIDR",
		"*.example.com":                  "wildcards are not supported",
		"http://github.com":              "not a host name, IP address or CIDR",
		"github.com:443":                 "not a host name, IP address or CIDR",
		"127.1":                          "not a host name, IP address or CIDR",
		"2130706433":                     "not a host name, IP address or CIDR",
		"0x7f000001":                     "not a host name, IP address or CIDR",
		"a..b":                           "not a host name, IP address or CIDR",
		"-a.com":                         "not a host name, IP address or CIDR",
		"fe80::1%eth0":                   "zone",
		strings.Repeat("a", 64) + ".com": "not a host name, IP address or CIDR",
	}
	for in, want := range bad {
		_, err := ParseRule(in)
		if err == nil {
			t.Errorf("ParseRule(%q) succeeded, want an error containing %q", in, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRule(%q) error %q does not contain %q", in, err, want)
		}
	}
}

func mustRules(t *testing.T, ss ...string) []Rule {
	t.Helper()
	var rules []Rule
	for _, s := range ss {
		r, err := ParseRule(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	return rules
}

// The decision itself, without a proxy: wildcards, the apex, case,
// trailing dots, operator rules, internal endpoints.
func TestDecide(t *testing.T) {
	c := newChecker(Policy{
		Limited:  true,
		Hosts:    []string{"GitHub.com", "*.npmjs.org", "api.example.com."},
		Operator: mustRules(t, "10.0.0.0/8", "db.internal"),
		Internal: []string{"127.0.0.1:41234", "[::1]:9000"},
	})
	cases := []struct {
		host   string
		port   int
		ok     bool
		exempt bool
	}{
		{"github.com", 443, true, false},
		{"GITHUB.COM.", 443, true, false},
		{"api.example.com", 443, true, false},
		{"registry.npmjs.org", 443, true, false},
		{"a.b.npmjs.org", 443, true, false},
		{"npmjs.org", 443, false, false},
		{"evilnpmjs.org", 443, false, false},
		{"github.com.evil.test", 443, false, false},
		{"db.internal", 5432, true, true},
		{"10.9.8.7", 22, true, false}, // allowed; the address check passes it too
		{"11.0.0.1", 22, false, false},
		{"127.0.0.1", 41234, true, true},
		{"127.0.0.1", 41235, false, false},
		{"[::1]", 9000, true, true},
		{"::1", 9000, true, true},
		{"github.com", 0, false, false},
		{"bad host", 80, false, false},
	}
	for _, tc := range cases {
		v := c.decide(tc.host, tc.port)
		if ok := v.refusal == ""; ok != tc.ok || v.exempt != tc.exempt {
			t.Errorf("decide(%q, %d) = ok %v exempt %v (%q), want ok %v exempt %v", tc.host, tc.port, ok, v.exempt, v.refusal, tc.ok, tc.exempt)
		}
	}
	if r := c.decide("api.evil.com", 443).refusal; r != "aod egress proxy: api.evil.com:443 is not allowed by this session's network policy (limited: allowed hosts github.com, *.npmjs.org, api.example.com; operator allows 10.0.0.0/8, db.internal)" {
		t.Errorf("refusal text: %q", r)
	}
}

func TestAddrProblem(t *testing.T) {
	c := newChecker(Policy{Operator: mustRules(t, "127.0.0.2/32", "fd12::/16")})
	host := []netip.Addr{netip.MustParseAddr("198.51.100.7")}
	cases := map[string]string{
		"127.0.0.1":        "loopback address",
		"127.255.0.1":      "loopback address",
		"::1":              "loopback address",
		"::ffff:127.0.0.1": "loopback address",
		"169.254.169.254":  "link-local address",
		"fe80::1":          "link-local address",
		"10.0.0.1":         "private address",
		"172.16.5.4":       "private address",
		"172.31.255.255":   "private address",
		"192.168.1.1":      "private address",
		"fd00::1":          "private address",
		"::ffff:10.0.0.1":  "private address",
		"100.64.0.1":       "carrier-grade NAT address",
		"0.0.0.0":          "unspecified address",
		"::":               "unspecified address",
		"224.0.0.1":        "multicast address",
		"ff02::1":          "multicast address",
		"255.255.255.255":  "broadcast address",
		"64:ff9b::a00:1":   "NAT64 form of a private address",
		"198.51.100.7":     "address of the aod host",
		"127.0.0.2":        "", // operator rule
		"fd12::5":          "", // operator rule
		"8.8.8.8":          "",
		"172.32.0.1":       "",
		"2606:4700::1111":  "",
		"100.128.0.1":      "",
	}
	for in, want := range cases {
		if got := c.addrProblem(netip.MustParseAddr(in), host); got != want {
			t.Errorf("addrProblem(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestRefusalBounded(t *testing.T) {
	var hosts []string
	for i := range 30 {
		hosts = append(hosts, fmt.Sprintf("h%d.test", i))
	}
	r := newChecker(Policy{Limited: true, Hosts: hosts}).decide("evil.test", 443).refusal
	if !strings.Contains(r, "h19.test, and 10 more)") || strings.Contains(r, "h20.test") {
		t.Errorf("refusal not bounded: %q", r)
	}
	if got := (Policy{}).String(); got != "unrestricted" {
		t.Errorf("Policy{}.String() = %q", got)
	}
	if got := (Policy{Limited: true}).String(); got != "limited: no allowed hosts" {
		t.Errorf("limited, no hosts: %q", got)
	}
}

func TestNormalHost(t *testing.T) {
	for in, want := range map[string]string{"https://GitHub.com:443/x": "github.com", "Example.COM.": "example.com", "[::1]:80": "::1", "*.npmjs.org": "*.npmjs.org", " ": ""} {
		if got := NormalHost(in); got != want {
			t.Errorf("NormalHost(%q) = %q, want %q", in, got, want)
		}
	}
}
