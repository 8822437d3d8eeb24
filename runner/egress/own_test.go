package egress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// An origin-form request is addressed to the proxy itself: its own
// handler answers it, while CONNECT and forwarding go on as before; with
// no handler it is refused as before.
func TestRequestsToTheProxyItself(t *testing.T) {
	u := startUpstream(t)
	res := newResolver(map[string]string{"up.test": "127.0.0.2"})
	own := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "own %s %s %s", r.Method, r.URL.Path, b)
	})
	send := func(addr, req string) (int, string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := "POST /aod/x HTTP/1.1\r\nHost: aod\r\nContent-Length: 5\r\n\r\nhello"
	forward := fmt.Sprintf("GET http://up.test:%d/page HTTP/1.1\r\nHost: up.test\r\n\r\n", u.port)
	pol := Policy{Operator: []Rule{mustRule(t, "127.0.0.2")}}
	for _, tc := range []struct {
		name       string
		own        http.Handler
		req        string
		wantStatus int
		wantBody   string
	}{
		{"own handler answers origin form", own, post, http.StatusOK, "own POST /aod/x hello"},
		{"forwarding still forwards", own, forward, http.StatusOK, "upstream /page"},
		{"without a handler origin form is refused", nil, post, http.StatusBadRequest, "this is an HTTP proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			is.NoErr(err) // a listener for the proxy
			serveWith(t, &Proxy{Resolver: res}, l, pol, nil, tc.own)
			status, body := send(l.Addr().String(), tc.req)
			is.Equal(status, tc.wantStatus)              // the answer's status
			is.True(strings.Contains(body, tc.wantBody)) // and body
		})
	}
}

func mustRule(t *testing.T, s string) Rule {
	t.Helper()
	r, err := ParseRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
