package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/matryer/is"
)

// serveLogged starts `aod <args>` in-process like serveTest, with its log
// lines kept, and returns the base URL and a reader of the log so far.
func serveLogged(t *testing.T, env map[string]string, args ...string) (string, func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var logs strings.Builder
	stderr := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(k string) string { return env[k] }, pw, stderr)
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
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("serve printed nothing; log:\n%s", logs.String())
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("no address in %q", sc.Text())
	}
	return m[1], func() string { mu.Lock(); defer mu.Unlock(); return logs.String() }
}

// aod serve --pass-env NAME hands the host's NAME to every session, below
// the user's secrets; the start-up log names what is passed (never the
// values) and warns that every user's sessions get it.
func TestServePassEnv(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	const hostKey = "sk-host-PASSED-4e1d9c"
	dir := filepath.Join(t.TempDir(), "data")
	env := map[string]string{"AOD_DATA_DIR": dir, "AOD_LISTEN": "127.0.0.1:0", "AOD_MIN_FREE_DISK": "0", "AOD_WARM_SPRITES": "0",
		"ANTHROPIC_API_KEY": hostKey, "SHARED_VAR": "from-host", "NOT_PASSED": "never"}
	base, logs := serveLogged(t, env, "serve", "--pass-env", "ANTHROPIC_API_KEY", "--pass-env", "SHARED_VAR,NOT_SET_HERE")

	log := logs()
	is.True(strings.Contains(log, "every session of every user"))                   // the start-up warning
	is.True(strings.Contains(log, "names=ANTHROPIC_API_KEY,SHARED_VAR"))            // naming what is passed
	is.True(strings.Contains(log, "not passed\" names=NOT_SET_HERE"))               // and what is named but not set
	is.True(!strings.Contains(log, hostKey) && !strings.Contains(log, "from-host")) // never a value

	out, err := cli(t, env, "token", "create", "--user", "alice")
	is.NoErr(err)
	alice := lastLine(out)
	out, err = cli(t, env, "token", "create", "--user", "bob")
	is.NoErr(err)
	bob := lastLine(out)
	api := apitest.NewClient(t, base)
	is.Equal(api.Do("PUT", "/secrets/SHARED_VAR", alice, map[string]any{"value": "from-user"}).Status, http.StatusCreated)

	script := `test "$ANTHROPIC_API_KEY" = "sk-host-""PASSED-4e1d9c" && echo key-ok
echo "shared=$SHARED_VAR not=[$NOT_PASSED]"`
	for _, c := range []struct {
		token, want string
	}{
		{alice, "key-ok\nshared=from-user not=[]\n"}, // the user's secret wins over the host's
		{bob, "key-ok\nshared=from-host not=[]\n"},   // every user's sessions get the host's
	} {
		id := api.StartSession(c.token, apitest.SessionBody(api.ShellAgent(c.token), script))
		s := api.Finish(c.token, id)
		is.Equal(s.Last().Type(), "exit")           // the session ran
		is.Equal(s.Output("stdout", 1), c.want)     // seeing the passed variables
		is.True(!strings.Contains(logs(), hostKey)) // which no log line holds
	}
}

// A --pass-env name must be an env var name and not one of aod's own;
// AOD_PASS_ENV takes a comma-separated list.
func TestPassEnvNames(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	host := map[string]string{"A": "1", "B": "2", "AOD_ENCRYPTION_KEY": "k"}
	p, err := resolvePassEnv([]string{"A, B", "A", "C"}, func(k string) string { return host[k] })
	is.NoErr(err)
	is.Equal(p.vars, map[string]string{"A": "1", "B": "2"}) // the set ones, each once
	is.Equal(p.unset, []string{"C"})                        // the unset one, named in the log
	_, err = resolvePassEnv([]string{"BAD-NAME"}, func(string) string { return "x" })
	is.True(err != nil && strings.Contains(err.Error(), "not an env var name")) // a bad name stops the server
	_, err = resolvePassEnv([]string{"AOD_ENCRYPTION_KEY"}, func(k string) string { return host[k] })
	is.True(err != nil && strings.Contains(err.Error(), "aod's own variables")) // aod's own are never passed

	var dataDir string
	serve := serveCmd(func(k string) string { return map[string]string{"AOD_PASS_ENV": "A,B"}[k] }, nil, &dataDir, io.Discard, io.Discard)
	is.Equal(serve.Flags().Lookup("pass-env").Value.String(), "[A,B]") // the variable is a comma-separated list
	_, err = cli(t, map[string]string{"AOD_DATA_DIR": t.TempDir(), "AOD_LISTEN": "127.0.0.1:0"}, "serve", "--pass-env", "AOD_ENCRYPTION_KEY")
	is.True(err != nil && strings.Contains(err.Error(), "--pass-env AOD_ENCRYPTION_KEY")) // refused before anything starts
}
