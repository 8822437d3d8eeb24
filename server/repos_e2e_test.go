package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/runner"
	"github.com/matryer/is"
)

// The private repository tests run real git in real sprites against a
// smart-HTTP git server (git http-backend) on 127.0.0.1 that needs the
// token. It stands in for github.com: under bubblewrap the sprite's egress
// proxy resolves github.com to 127.0.0.1 (which --egress-allow 127.0.0.1
// lets it reach) and dials the server's port for 443; an unsandboxed
// sprite, which has no egress proxy, is given a CONNECT proxy that does the
// same. (A url.<local>.insteadOf rewrite would not do: git asks for the
// credentials of the URL it rewrote to, and aod gives a token only for its
// resource's own URL.)

// repoToken is the private repositories' token: it must never show up
// anywhere but in git's requests.
const repoToken = "ghp_repoSENTINEL_7c2e19d04b"

// syncBuffer is a log sink the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// repoSetup is a git server standing in for github.com and an aod server
// whose sprites reach it.
type repoSetup struct {
	a          *apitest.Server
	gs         *testkit.GitServer
	log        *syncBuffer
	tok, agent string
	env        map[string]any // secret_env_vars that let git in a sprite talk to gs
}

func newRepoSetup(t *testing.T, mode string) *repoSetup {
	t.Helper()
	gs := testkit.NewGitServer(t, repoToken)
	log := &syncBuffer{}
	a, err := apitest.Start(t, apitest.Options{Runner: apitest.RealRunner, Sandbox: mode,
		EgressAllow: []string{"127.0.0.1"}, EgressResolver: gs, EgressDial: gs.Dial, Log: log})
	if err != nil {
		testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", "repository test: sandbox %s cannot run here: %v", mode, err)
	}
	tok := a.Token("alice")
	// The stand-in's certificate is not github.com's.
	env := map[string]any{"GIT_SSL_NO_VERIFY": "1"}
	if mode == runner.SandboxNone {
		p := gs.Proxy(t)
		env["HTTPS_PROXY"], env["https_proxy"] = p, p
	}
	return &repoSetup{a: a, gs: gs, log: log, tok: tok, agent: a.ShellAgent(tok), env: env}
}

// start creates a session running script with resources.
func (rs *repoSetup) start(script string, resources ...map[string]any) (string, apitest.Response) {
	list := make([]any, len(resources))
	for i, r := range resources {
		list[i] = r
	}
	r := rs.a.Do("POST", "/sessions", rs.tok, apitest.SessionBody(rs.agent, script, "resources", list, "secret_env_vars", rs.env))
	if r.Status != http.StatusAccepted {
		rs.a.T().Fatalf("POST /sessions: %d %s", r.Status, r.Raw)
	}
	id, _ := r.Obj()["id"].(string)
	return id, r
}

// repo is a resource for repository name with the token and extra fields
// kv. The tests mount checkouts under /home/sprite, the working directory,
// so their scripts' relative paths hold with and without a sandbox
// (unsandboxed, a sprite's paths are its host paths).
func repo(name string, kv ...string) map[string]any {
	m := map[string]any{"type": "github_repository", "url": "https://github.com/" + name, "authorization_token": repoToken}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func shaHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func exitCode(s testkit.Transcript) any { return s.Last().Data["code"] }

func TestPrivateRepositoryStaysUsable(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{runner.SandboxNone, runner.SandboxBwrap} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			rs := newRepoSetup(t, mode)
			first := rs.gs.Repo(t, "acme/private")

			id, ack := rs.start("cd private && git rev-parse HEAD && cat README.md\n", repo("acme/private", "mount_path", "/home/sprite/private"))
			s1 := rs.a.Finish(rs.tok, id)
			is.Equal(exitCode(s1), float64(0))                                    // turn 1 succeeded
			is.Equal(s1.Output("stdout", 1), first+"\nhello from acme/private\n") // the repository was cloned at create
			is.True(rs.gs.Refused.Load() > 0)                                     // the server turned away git's first, tokenless request

			second := rs.gs.Commit(t, "acme/private", "main", "NEWS", "more\n")
			turn2 := `set -e
cd private
git fetch --quiet origin
git rev-parse origin/main
echo change > change.txt
git add change.txt
git -c user.name=agent -c user.email=agent@example.com commit --quiet -m "from the sprite"
git push --quiet origin HEAD:refs/heads/from-sprite
git rev-parse HEAD
`
			r := rs.a.Do("POST", "/sessions/"+id+"/prompt", rs.tok, map[string]any{"prompt": turn2})
			is.Equal(r.Status, http.StatusAccepted) // turn 2 queued
			s2 := rs.a.Finish(rs.tok, id)
			is.Equal(exitCode(s2), float64(0)) // turn 2 succeeded
			out := strings.Split(strings.TrimSpace(s2.Output("stdout", 2)), "\n")
			is.Equal(len(out), 2)                                         // the fetched tip and the pushed commit
			is.Equal(out[0], second)                                      // git fetch in a later turn got the new commit
			is.Equal(rs.gs.Rev(t, "acme/private", "from-sprite"), out[1]) // git push in a later turn reached the server

			// Git gets the token for its repository's URL only; under
			// bubblewrap the helper asked directly (as anything in the
			// sprite can) gets nothing for any other URL.
			turn3 := `fill() { printf "$1" | GIT_TERMINAL_PROMPT=0 git credential fill 2>/dev/null | sed -n 's/^password=//p' | sha256sum | cut -c1-64; }
fill 'protocol=https\nhost=github.com\npath=acme/private\n\n'
fill 'protocol=https\nhost=github.com\npath=acme/other\n\n'
`
			if mode == runner.SandboxBwrap {
				turn3 += `ask() { printf "$1" | /aod/bin/aod-init git-credential get | wc -c; }
ask 'protocol=https\nhost=evil.example\npath=acme/private\n'
ask 'protocol=https\nhost=github.com\npath=acme/other\n'
ask 'protocol=http\nhost=github.com\npath=acme/private\n'
ask 'protocol=https\nhost=github.com\n'
ask 'protocol=https\nhost=github.com:8443\npath=acme/private\n'
env | grep -c '^AOD_GIT_TOKEN_'
printf 'protocol=https\nhost=github.com\npath=acme/private.git\n' | /aod/bin/aod-init git-credential get | sha256sum | cut -c1-64
`
			}
			r = rs.a.Do("POST", "/sessions/"+id+"/prompt", rs.tok, map[string]any{"prompt": turn3})
			is.Equal(r.Status, http.StatusAccepted) // turn 3 queued
			s3 := rs.a.Finish(rs.tok, id)
			want := shaHex(repoToken+"\n") + "\n" + shaHex("") + "\n"
			if mode == runner.SandboxBwrap {
				want += "0\n0\n0\n0\n0\n0\n" + shaHex("username=x-access-token\npassword="+repoToken+"\n") + "\n"
			}
			is.Equal(s3.Output("stdout", 3), want) // the token for its own repository and nothing for any other (nor in the environment under bwrap)

			if mode == runner.SandboxBwrap {
				// Another user's sprite asks its own socket for this
				// repository: no sprite can ask for another's tokens.
				bob := rs.a.Token("bob")
				other := rs.a.StartSession(bob, apitest.SessionBody(rs.a.ShellAgent(bob),
					`printf 'protocol=https\nhost=github.com\npath=acme/private\n' | /aod/bin/aod-init git-credential get | wc -c`))
				so := rs.a.Finish(bob, other)
				is.Equal(so.Output("stdout", 1), "0\n") // another sprite gets nothing
			}

			// The token is in no response, log line, event or file.
			seen := [][]byte{ack.Raw, s1.Raw, s2.Raw, s3.Raw}
			for _, p := range []string{"/sessions/" + id, "/sessions", "/sessions/" + id + "/turns", "/sessions/" + id + "/egress"} {
				r := rs.a.Do("GET", p, rs.tok, nil)
				is.Equal(r.Status, http.StatusOK) // read the session back
				seen = append(seen, r.Raw)
			}
			for _, raw := range seen {
				is.True(!bytes.Contains(raw, []byte(repoToken))) // no response or stored event holds the token
			}
			logged := rs.log.String()
			is.True(logged != "") // the server's log was captured
			if mode == runner.SandboxBwrap {
				is.True(strings.Contains(logged, "git credential asked")) // debug lines included
			}
			is.True(!strings.Contains(logged, repoToken)) // no log line holds the token
			noTokenOnDisk(t, rs.a)
		})
	}
}

// noTokenOnDisk stops a's runner and reads every file under its data dir
// (the database with its WAL, the key file, every sprite's tree and
// clone) for the token.
func noTokenOnDisk(t *testing.T, a *apitest.Server) {
	is := is.New(t)
	a.Runner.Shutdown(t.Context(), 0)
	checked := 0
	err := filepath.WalkDir(a.Dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		checked++
		is.True(!bytes.Contains(b, []byte(repoToken))) // the token is nowhere on disk (see p)
		return nil
	})
	is.NoErr(err)          // walk the data dir
	is.True(checked >= 10) // the database, the key file and the clone's files were read
}

func TestRepositoryCheckout(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{runner.SandboxNone, runner.SandboxBwrap} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			rs := newRepoSetup(t, mode)
			c1 := rs.gs.Repo(t, "acme/lib")
			rs.gs.Tag(t, "acme/lib", "v1.0", c1)
			c2 := rs.gs.Commit(t, "acme/lib", "main", "a.txt", "two\n")
			c3 := rs.gs.Commit(t, "acme/lib", "main", "a.txt", "three\n")
			c4 := rs.gs.Commit(t, "acme/lib", "feature/x", "b.txt", "four\n")

			id, ack := rs.start("for d in lib feature tag commit; do git -C $d rev-parse HEAD; done\n",
				repo("acme/lib", "mount_path", "/home/sprite/lib"),
				repo("acme/lib", "mount_path", "/home/sprite/feature", "checkout", "feature/x"),
				repo("acme/lib", "mount_path", "/home/sprite/tag", "checkout", "v1.0"),
				repo("acme/lib", "mount_path", "/home/sprite/commit", "checkout", c2))
			rsJSON, _ := ack.Obj()["resources"].([]any)
			is.Equal(len(rsJSON), 4) // four resources echoed
			for i, want := range []any{nil, "feature/x", "v1.0", c2} {
				m, _ := rsJSON[i].(map[string]any)
				is.Equal(m["checkout"], want) // each echoes its checkout (none when it has none)
			}
			s := rs.a.Finish(rs.tok, id)
			is.Equal(exitCode(s), float64(0))                                // the session ran
			is.Equal(s.Output("stdout", 1), c3+"\n"+c4+"\n"+c1+"\n"+c2+"\n") // default branch, branch, tag and commit checked out

			for name, tc := range map[string]struct{ checkout, want string }{
				"missing branch": {"no-such-branch", "checkout no-such-branch: no such branch or tag in https://github.com/acme/lib"},
				"missing commit": {strings.Repeat("deadbeef", 5), "checkout " + strings.Repeat("deadbeef", 5) + ": no such commit in https://github.com/acme/lib"},
			} {
				t.Run(name, func(t *testing.T) {
					is := is.New(t)
					id, _ := rs.start("true", repo("acme/lib", "checkout", tc.checkout))
					s := rs.a.Finish(rs.tok, id)
					is.Equal(s.Last().Type(), "error") // provisioning failed
					var msg string
					for _, e := range s.Events {
						if e.Type() == "stage" && e.Str("state") == "failed" {
							msg = e.Str("message")
						}
					}
					is.True(strings.HasPrefix(msg, "Provisioning script failed: ")) // at provision_setup
					is.True(strings.Contains(msg, tc.want))                         // saying which checkout is missing
				})
			}
		})
	}
}

// GET /sessions/{id}/diff is the unified diff of each repository against
// the commit it was cloned at: commits the agent made since, changes it
// did not commit and new files, not ignored ones; the repository's own
// index is untouched.
func TestSessionDiff(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	rs := newRepoSetup(t, runner.SandboxBwrap)
	rs.gs.Repo(t, "acme/lib")
	rs.gs.Commit(t, "acme/lib", "main", "a.txt", "one\n")
	id, _ := rs.start(`cd lib && git config user.email a@b && git config user.name a &&
echo two > a.txt && git commit -qam "agent commit" &&
echo three >> a.txt && echo new > new.txt && echo '*.log' > .gitignore && echo noise > x.log && git add .gitignore &&
git status --porcelain > /home/sprite/status-before
`, repo("acme/lib", "mount_path", "/home/sprite/lib"))
	s := rs.a.Finish(rs.tok, id)
	is.Equal(exitCode(s), float64(0)) // the agent's changes are made
	r := rs.a.Do("GET", "/sessions/"+id+"/diff", rs.tok, nil)
	is.Equal(r.Status, http.StatusOK)                                       // the diff
	is.True(strings.HasPrefix(r.Header.Get("Content-Type"), "text/x-diff")) // as a diff
	diff := string(r.Raw)
	t.Log(diff)
	is.True(strings.Contains(diff, "--- a/home/sprite/lib/a.txt"))      // paths under the mount path
	is.True(strings.Contains(diff, "-one\n+two\n+three\n"))             // the commit and the uncommitted change, against the clone
	is.True(strings.Contains(diff, "+++ b/home/sprite/lib/new.txt"))    // a new file
	is.True(strings.Contains(diff, "+++ b/home/sprite/lib/.gitignore")) // staged ones too
	is.True(!strings.Contains(diff, "x.log"))                           // not an ignored one
	st := rs.a.Do("GET", "/sessions/"+id+"/files/content?path=/home/sprite/status-before", rs.tok, nil)
	r2 := rs.a.Do("POST", "/sessions/"+id+"/prompt", rs.tok, map[string]any{"prompt": "cd lib && git status --porcelain"})
	is.Equal(r2.Status, http.StatusAccepted)
	s = rs.a.Finish(rs.tok, id)
	is.Equal(s.Output("stdout", 2), string(st.Raw)) // the repository's index is as the agent left it
	other := rs.a.Token("mallory")
	is.Equal(rs.a.Do("GET", "/sessions/"+id+"/diff", other, nil).Status, http.StatusNotFound) // not someone else's
}
