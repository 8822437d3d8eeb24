package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// TestUserSetPassword: an operator gives someone a web UI login from the
// CLI; the password comes from stdin, never from the command line.
func TestUserSetPassword(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "data")
	openStore := func(ctx context.Context) (*store.DB, error) { return store.Open(ctx, dir, store.Options{}) }
	setPassword := func(name, stdin string) (string, error) {
		var out bytes.Buffer
		cmd := userCmd(openStore, &out)
		cmd.SetArgs([]string{"set-password", name})
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := setPassword("alice", "correct horse\r\nignored second line\n")
	is.NoErr(err)                           // set-password
	is.True(strings.Contains(out, "alice")) // reports the user
	_, err = setPassword("alice", "")
	is.True(err != nil) // an empty stdin is refused
	_, err = setPassword("alice", "short\n")
	is.True(err != nil) // so is a short password

	db, err := openStore(context.Background())
	is.NoErr(err) // open
	defer db.Close()
	u, err := db.CheckPassword(context.Background(), "alice", "correct horse")
	is.NoErr(err)                 // the first line, without its line ending, is the password
	is.Equal(u.Username, "alice") // for the new user
}

// TestServeUI: serve mounts the web UI; --registration closed (here from
// the environment) closes sign-up, and a bad value stops serve.
func TestServeUI(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"AOD_DATA_DIR": dir, "AOD_LISTEN": "127.0.0.1:0", "AOD_REGISTRATION": "closed"}
	base := serveTest(t, env)

	res, err := http.Get(base + "/")
	is.NoErr(err) // landing
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusOK)                    // served
	is.True(strings.Contains(string(body), "Agent on Demand")) // the landing page
	res, err = http.Get(base + "/ui/register")
	is.NoErr(err) // register
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	is.True(strings.Contains(string(body), "Registration is closed")) // closed by AOD_REGISTRATION

	// The operator's CLI makes a login that works against the running server.
	openStore := func(ctx context.Context) (*store.DB, error) { return store.Open(ctx, dir, store.Options{}) }
	cmd := userCmd(openStore, io.Discard)
	cmd.SetArgs([]string{"set-password", "op"})
	cmd.SetIn(strings.NewReader("s3cret-pass\n"))
	is.NoErr(cmd.ExecuteContext(context.Background())) // set-password beside the server
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	res, err = c.Get(base + "/ui/login")
	is.NoErr(err) // login page
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	tok := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindSubmatch(body)
	is.True(tok != nil) // the form's CSRF token
	res, err = c.PostForm(base+"/ui/login", url.Values{"username": {"op"}, "password": {"s3cret-pass"}, "csrf_token": {string(tok[1])}})
	is.NoErr(err) // log in
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusOK)              // redirected to a page
	is.True(strings.Contains(string(body), "Dashboard")) // the dashboard

	_, err = cli(t, map[string]string{"AOD_DATA_DIR": filepath.Join(t.TempDir(), "d2"), "AOD_LISTEN": "127.0.0.1:0"},
		"serve", "--registration", "sometimes")
	is.True(err != nil) // an unknown registration mode stops serve
}
