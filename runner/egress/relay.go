package egress

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
)

// RelayAddr is where the relay listens inside a sprite.
const RelayAddr = "127.0.0.1:3128"

// Relay listens on listen and forwards every connection, raw, to the
// proxy's unix socket. For each address in forwards it also listens there
// and tunnels each connection to that same address through the proxy
// (CONNECT), so an endpoint on the host's loopback appears at the same
// address inside. It returns once every listener is bound; they serve
// until ctx ends.
func Relay(ctx context.Context, listen, socket string, forwards []string) error {
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	lns = append(lns, ln)
	go accept(ln, func(c net.Conn) { pipeTo(c, socket, "") })
	for _, f := range forwards {
		fl, err := net.Listen("tcp", f)
		if err != nil {
			closeAll()
			return fmt.Errorf("forward %s: %w", f, err)
		}
		lns = append(lns, fl)
		target := f
		go accept(fl, func(c net.Conn) { pipeTo(c, socket, target) })
	}
	context.AfterFunc(ctx, closeAll)
	return nil
}

func accept(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

// pipeTo carries c to the proxy; target non-empty tunnels it there first.
func pipeTo(c net.Conn, socket, target string) {
	defer c.Close()
	up, err := net.Dial("unix", socket)
	if err != nil {
		return
	}
	defer up.Close()
	var br *bufio.Reader
	if target != "" {
		fmt.Fprintf(up, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		br = bufio.NewReader(up)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			return
		}
	}
	if br == nil {
		splice(c, up, nil)
		return
	}
	splice(up, c, br) // what the proxy sent past its reply is in br
}

// ProxyEnv is what every sprite process gets so curl, apt, npm, pip, git
// and the agent CLIs use the relay at addr, in upper and lower case.
func ProxyEnv(addr string) []string {
	vals := map[string]string{
		"HTTP_PROXY":  "http://" + addr,
		"HTTPS_PROXY": "http://" + addr,
		"ALL_PROXY":   "socks5h://" + addr,
		"NO_PROXY":    "localhost,127.0.0.1,::1",
	}
	var out []string
	for k, v := range vals {
		out = append(out, k+"="+v, strings.ToLower(k)+"="+v)
	}
	out = append(out, "npm_config_proxy=http://"+addr, "npm_config_https_proxy=http://"+addr)
	sort.Strings(out)
	return out
}
