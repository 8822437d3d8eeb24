package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// cli runs the aod command in-process with the given environment and
// returns its stdout.
func cli(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// serveTest starts `aod serve` on 127.0.0.1:0 and returns its base URL; the
// server stops when the test ends.
func serveTest(t *testing.T, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatalf("serve printed nothing")
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("no address in %q", sc.Text())
	}
	return m[1]
}

func TestServeAndQuickstart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "data")
	// No free-disk floor: CI machines may have less than the default free.
	env := map[string]string{"AOD_DATA_DIR": dir, "AOD_LISTEN": "127.0.0.1:0", "AOD_MIN_FREE_DISK": "0"}
	base := serveTest(t, env)

	// token create works beside the running server, from the environment's data dir.
	out, err := cli(t, env, "token", "create", "--user", "alice", "--name", "laptop")
	is.NoErr(err) // token create
	token := lastLine(out)
	is.True(regexp.MustCompile(`^aod_[A-Za-z0-9_-]{43}$`).MatchString(token)) // the token is the last line

	// The quickstart's Step 1, verbatim.
	req, _ := http.NewRequest("POST", base+"/agents", strings.NewReader(`{"name":"hello","model":"anthropic/claude-sonnet-4-6","runtime":"claude"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	is.NoErr(err) // POST /agents
	defer res.Body.Close()
	is.Equal(res.StatusCode, 201) // created
	var agent map[string]any
	is.NoErr(json.NewDecoder(res.Body).Decode(&agent)) // JSON body
	is.Equal(agent["name"], "hello")                   // echoes the name
	is.Equal(agent["runtime"], "claude")               // runtime
	is.Equal(agent["provider"], "anthropic")           // and provider

	st, err := os.Stat(filepath.Join(dir, "aod.key"))
	is.NoErr(err)                                  // key file created on first start
	is.Equal(st.Mode().Perm(), os.FileMode(0o600)) // 0600

	out, err = cli(t, env, "token", "list", "--user", "alice")
	is.NoErr(err)                              // token list
	is.True(strings.Contains(out, token[:12])) // shows the prefix
	is.True(!strings.Contains(out, token))     // never the token
	is.True(strings.Contains(out, "laptop"))   // and the label

	// Backup while the server runs, then the backup opens on its own.
	dest := filepath.Join(t.TempDir(), "bk")
	_, err = cli(t, env, "backup", dest)
	is.NoErr(err) // backup
	for _, f := range []string{"aod.db", "aod.key"} {
		_, err := os.Stat(filepath.Join(dest, f))
		is.NoErr(err) // backup holds the database and the key
	}
	out, err = cli(t, map[string]string{}, "--data-dir", dest, "token", "list", "--user", "alice")
	is.NoErr(err)                              // the backup is a working data dir
	is.True(strings.Contains(out, token[:12])) // with alice's key

	_, err = cli(t, env, "token", "revoke", token[:12])
	is.NoErr(err) // revoke
	req, _ = http.NewRequest("GET", base+"/agents", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res2, err := http.DefaultClient.Do(req)
	is.NoErr(err) // GET /agents
	res2.Body.Close()
	is.Equal(res2.StatusCode, 401) // a revoked token is refused at once

	_, err = cli(t, env, "token", "revoke", "aod_nomatch")
	is.True(err != nil) // revoking an unknown prefix is an error
	_, err = cli(t, env, "token", "list", "--user", "nobody")
	is.True(err != nil) // listing an unknown user is an error
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	envDir := filepath.Join(t.TempDir(), "env")
	flagDir := filepath.Join(t.TempDir(), "flag")
	env := map[string]string{"AOD_DATA_DIR": envDir}
	_, err := cli(t, env, "--data-dir", flagDir, "token", "create", "--user", "bob")
	is.True(err != nil && strings.Contains(err.Error(), "no aod data dir at "+flagDir+": start `aod serve` there first or pass --data-dir")) // a data dir serve never made is refused, not made
	_, err = os.Stat(flagDir)
	is.True(os.IsNotExist(err)) // and nothing was created
	db, err := store.Open(context.Background(), flagDir, store.Options{})
	is.NoErr(err) // as serve would have made it
	db.Close()
	_, err = cli(t, env, "--data-dir", flagDir, "token", "create", "--user", "bob")
	is.NoErr(err) // token create with --data-dir
	_, err = cli(t, env, "token", "create", "--user", "bob")
	is.True(err != nil && strings.Contains(err.Error(), envDir)) // without the flag, the environment's dir is the one asked for
	_, err = os.Stat(envDir)
	is.True(os.IsNotExist(err)) // and not made either

	_, err = cli(t, env, "--data-dir", flagDir, "token", "create")
	is.True(err != nil) // --user is required
}

func TestVersion(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	out, err := cli(t, nil, "version")
	is.NoErr(err)                           // version runs
	is.True(strings.HasPrefix(out, "aod ")) // prints the name and version
	flag, err := cli(t, nil, "--version")
	is.NoErr(err)       // so does --version
	is.Equal(flag, out) // the same line
}

func TestServeStopsOnCancel(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	env := map[string]string{"AOD_DATA_DIR": t.TempDir(), "AOD_LISTEN": "127.0.0.1:0"}
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	// Cancel only once the server is observably up: it printed its address
	// and answers /health there.
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, pr)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(15 * time.Second):
		t.Fatal("serve printed no listen line within 15s")
	}
	m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(line)
	is.True(m != nil) // serve printed the address it listens on
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(m[1] + "/health")
	is.NoErr(err) // the server answers at that address
	res.Body.Close()
	is.Equal(res.StatusCode, 200) // and is healthy

	cancel()
	stopping := time.Now()
	select {
	case err := <-done:
		is.NoErr(err) // a signal shuts the server down cleanly
		t.Logf("serve stopped %s after cancel", time.Since(stopping).Round(time.Millisecond))
	case <-time.After(60 * time.Second): // a hang guard, not a latency check: a loaded machine is slow to tear sprites down
		t.Fatal("serve did not stop after cancel")
	}
}

func TestFakeModelCommand(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"fake-model", "--listen", "127.0.0.1:0"}, func(string) string { return "" }, pw, io.Discard)
		pw.Close()
	}()
	defer func() {
		cancel()
		is.NoErr(<-done) // the fake stops cleanly
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	is.NoErr(err) // it prints its address
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(line)
	is.True(m != nil) // address in the first line
	res, err := http.Post(m[1]+"/v1/messages", "application/json",
		strings.NewReader(`{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[{"role":"user","content":"ping from test"}]}`))
	is.NoErr(err) // POST /v1/messages
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	is.Equal(res.StatusCode, 200)                                            // answered
	is.True(strings.Contains(string(body), "fake reply to: ping from test")) // the default reply echoes the last user message

	_, err = cli(t, nil, "fake-model", "--script", filepath.Join(t.TempDir(), "missing.json"))
	is.True(err != nil) // a missing script is an error, not a silent default
}

// `aod environments gc` removes the package layers no sprite uses, keeps
// the one a sprite is made over, and refuses a directory that is not a
// data dir instead of making one.
func TestEnvironmentsGC(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := t.TempDir()
	db, err := store.Open(context.Background(), dir, store.Options{})
	is.NoErr(err) // a data dir, as serve makes it
	db.Close()
	for _, key := range []string{"env-a-v1-l1-0123456789abcdef", "env-b-v1-l1-0123456789abcdef"} {
		is.NoErr(os.MkdirAll(filepath.Join(local.LayersDir(dir), key, "usr"), 0o755))
		is.NoErr(os.WriteFile(filepath.Join(local.LayersDir(dir), key, ".used"), nil, 0o600))
	}
	is.NoErr(os.MkdirAll(filepath.Join(dir, "sprites", "s1"), 0o700))
	is.NoErr(os.WriteFile(filepath.Join(dir, "sprites", "s1", "layer"), []byte("env-b-v1-l1-0123456789abcdef"), 0o600))
	out, err := cli(t, nil, "--data-dir", dir, "environments", "gc")
	is.NoErr(err)                                                             // gc runs
	is.True(strings.Contains(out, "env-a-v1-l1-0123456789abcdef  last used")) // listing each layer
	is.True(strings.Contains(out, "1 of 2 package layers removed"))           // removing the unused one (see out)
	_, err = os.Stat(filepath.Join(local.LayersDir(dir), "env-a-v1-l1-0123456789abcdef"))
	is.True(os.IsNotExist(err)) // it is gone
	_, err = os.Stat(filepath.Join(local.LayersDir(dir), "env-b-v1-l1-0123456789abcdef"))
	is.NoErr(err) // the one in use stays

	nowhere := filepath.Join(t.TempDir(), "not-a-data-dir")
	_, err = cli(t, nil, "--data-dir", nowhere, "environments", "gc")
	is.True(err != nil && strings.Contains(err.Error(), "no aod data dir")) // a wrong directory is an error
	_, err = os.Stat(nowhere)
	is.True(os.IsNotExist(err)) // and nothing is made there
}

// An operator key made on the server's shell creates a user and a key for
// them over HTTP; the new key acts as that user and is not an operator's;
// an ordinary key is refused the route.
func TestOperatorKeyCreatesUsersKeys(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"AOD_DATA_DIR": dir, "AOD_LISTEN": "127.0.0.1:0", "AOD_MIN_FREE_DISK": "0"}
	base := serveTest(t, env)
	out, err := cli(t, env, "token", "create", "--user", "ops", "--admin")
	is.NoErr(err)                                    // token create --admin
	is.True(strings.Contains(out, "operator token")) // says what it made
	operator := lastLine(out)
	out, err = cli(t, env, "token", "create", "--user", "ann")
	is.NoErr(err)
	plain := lastLine(out)
	out, err = cli(t, env, "token", "list", "--user", "ops")
	is.NoErr(err)
	is.True(strings.Contains(out, "active, operator")) // the list tells an operator key apart

	post := func(token, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", base+"/admin/api-keys", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		is.NoErr(err)
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	code, m := post(plain, `{"user":"carol","name":"dashboard"}`)
	is.Equal(code, http.StatusForbidden) // an ordinary key may not
	is.True(strings.Contains(m["detail"].(string), "operator key"))
	code, m = post(operator, `{"user":"carol","name":"dashboard"}`)
	is.Equal(code, http.StatusCreated) // the operator's may
	is.Equal(m["user"], "carol")       // for carol, created now
	is.Equal(m["admin"], false)        // an ordinary key
	token, _ := m["token"].(string)
	code, _ = post(operator, `{"user":"bad name!"}`)
	is.Equal(code, http.StatusUnprocessableEntity) // a username is validated

	req, _ := http.NewRequest("POST", base+"/agents", strings.NewReader(`{"name":"mine","model":"anthropic/claude-sonnet-4-6","runtime":"claude"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	is.NoErr(err)
	res.Body.Close()
	is.Equal(res.StatusCode, http.StatusCreated) // carol's key works
	code, _ = post(token, `{"user":"dave"}`)
	is.Equal(code, http.StatusForbidden) // and cannot mint keys itself
	out, err = cli(t, env, "token", "list", "--user", "carol")
	is.NoErr(err)
	is.True(strings.Contains(out, "dashboard")) // carol's key is hers, listed on the server
}
