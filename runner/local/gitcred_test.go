package local

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// credSockets serves two sprites' proxy sockets, as the backend does for
// their commands, with a GitCredentials that knows one repository of
// sprite "a".
func credSockets(t *testing.T, answer string) (a, b string) {
	t.Helper()
	e := &egressNet{proxy: &egress.Proxy{}, dir: t.TempDir()}
	e.creds = func(ctx context.Context, name string, c GitCredential) (string, string, bool) {
		if name == "a" && c == (GitCredential{Protocol: "https", Host: "github.com", Path: "acme/private"}) {
			return "x-access-token", answer, true
		}
		return "", "", false
	}
	var paths []string
	for _, name := range []string{"a", "b"} {
		s, err := e.serve(name, sprite.Network{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.close)
		paths = append(paths, s.path)
	}
	return paths[0], paths[1]
}

func TestCredentialHelperAsksItsSpritesSocket(t *testing.T) {
	a, b := credSockets(t, "tok-a")
	ask := "protocol=https\nhost=github.com\npath=acme/private\n\n"
	for _, tc := range []struct {
		name, socket, op, stdin, want string
		code                          int
	}{
		{"its repository", a, "get", ask, "username=x-access-token\npassword=tok-a\n", 0},
		{"another sprite's socket", b, "get", ask, "", 0},
		{"another repository", a, "get", "protocol=https\nhost=github.com\npath=acme/other\n", "", 0},
		{"store is ignored", a, "store", ask + "username=u\npassword=p\n", "", 0},
		{"erase is ignored", a, "erase", ask, "", 0},
		{"a request past the bound", a, "get", "path=" + strings.Repeat("x", maxCredentialBytes), "", 1},
		{"no socket", a + ".missing", "get", ask, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			var out, errs bytes.Buffer
			code := credentialHelperMain(tc.socket, []string{tc.op}, strings.NewReader(tc.stdin), &out, &errs)
			is.Equal(code, tc.code)         // the helper's exit code
			is.Equal(out.String(), tc.want) // what git reads
		})
	}
}

func TestCredentialSocketRefusesMalformedRequests(t *testing.T) {
	a, _ := credSockets(t, "tok-a")
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", a)
	}}}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"GET", "GET", credentialPath, "", http.StatusMethodNotAllowed},
		{"another path", "POST", "/aod/other", "", http.StatusNotFound},
		{"a body past the bound", "POST", credentialPath, strings.Repeat("x", maxCredentialBytes+10), http.StatusBadRequest},
		{"its repository", "POST", credentialPath, "protocol=https\nhost=github.com\npath=acme/private\n", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			req, err := http.NewRequest(tc.method, "http://aod"+tc.path, strings.NewReader(tc.body))
			is.NoErr(err) // the request
			resp, err := client.Do(req)
			is.NoErr(err) // the socket answers
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			is.Equal(resp.StatusCode, tc.want)                     // a bounded, plain refusal
			is.Equal(resp.Header.Get("Cache-Control"), "no-store") // never cached
		})
	}
}

// A token that would break git's line format is never handed over.
func TestCredentialAnswerWithALineBreakIsWithheld(t *testing.T) {
	is := is.New(t)
	a, _ := credSockets(t, "tok\nusername=evil")
	var out bytes.Buffer
	code := credentialHelperMain(a, []string{"get"}, strings.NewReader("protocol=https\nhost=github.com\npath=acme/private\n"), &out, io.Discard)
	is.Equal(code, 0)          // git carries on
	is.Equal(out.String(), "") // without a credential
}
