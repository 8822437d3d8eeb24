package testkit

import (
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// GitServer is a smart-HTTP git server on 127.0.0.1 over TLS: git's own
// http-backend under net/http/cgi, serving bare repositories that every
// request must authenticate to with Token as the basic-auth password (any
// username). It stands in for github.com: Resolve and Dial send a sprite's
// egress proxy there, and Proxy is a CONNECT proxy for a process that has
// none.
type GitServer struct {
	Token string
	Addr  string // 127.0.0.1:port
	root  string // GIT_PROJECT_ROOT: <owner>/<repo>.git
	work  string // scratch clones the test commits in
	git   string
	// Refused counts requests turned away for a missing or wrong token.
	Refused atomic.Int64
}

// NewGitServer starts a git server requiring token; it stops when t ends.
// A machine without git fails the test (CI installs it).
func NewGitServer(t testing.TB, token string) *GitServer {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git server: git is not installed: %v", err)
	}
	backend := filepath.Join(gitExecPath(t, git), "git-http-backend")
	g := &GitServer{Token: token, root: t.TempDir(), work: t.TempDir(), git: git}
	cgiH := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + g.root, "GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_NOSYSTEM=1", "HOME=" + g.work}, Stderr: io.Discard}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
			g.Refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "token required", http.StatusUnauthorized)
			return
		}
		cgiH.ServeHTTP(w, r)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	g.Addr = srv.Listener.Addr().String()
	return g
}

func gitExecPath(t testing.TB, git string) string {
	out, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// run runs git in dir with no user or system config, failing t on error,
// and returns its trimmed output.
func (g *GitServer) run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(g.git, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=test",
		"GIT_AUTHOR_EMAIL=test@example.com", "GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Repo creates the bare repository name ("owner/repo") with one commit on
// main, pushes to it allowed, and returns that commit's id.
func (g *GitServer) Repo(t testing.TB, name string) string {
	t.Helper()
	bare := g.bare(name)
	if err := os.MkdirAll(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	g.run(t, bare, "init", "--quiet", "--bare", "--initial-branch=main")
	g.run(t, bare, "config", "http.receivepack", "true")
	g.run(t, g.work, "clone", "--quiet", bare, g.scratch(name))
	return g.Commit(t, name, "main", "README.md", "hello from "+name+"\n")
}

func (g *GitServer) bare(name string) string { return filepath.Join(g.root, name+".git") }

func (g *GitServer) scratch(name string) string {
	return filepath.Join(g.work, strings.ReplaceAll(name, "/", "_"))
}

// Commit writes file with content on branch of repository name (made from
// the branch's tip, or from main when it is new) and returns the new
// commit's id.
func (g *GitServer) Commit(t testing.TB, name, branch, file, content string) string {
	t.Helper()
	dir := g.scratch(name)
	g.run(t, dir, "fetch", "--quiet", "origin")
	base := "origin/" + branch
	if g.Rev(t, name, branch) == "" {
		base = "origin/main"
	}
	if g.Rev(t, name, "main") == "" {
		g.run(t, dir, "checkout", "--quiet", "--orphan", branch)
	} else {
		g.run(t, dir, "checkout", "--quiet", "-B", branch, base)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	g.run(t, dir, "add", file)
	g.run(t, dir, "commit", "--quiet", "-m", "write "+file)
	g.run(t, dir, "push", "--quiet", "origin", "HEAD:refs/heads/"+branch)
	return g.run(t, dir, "rev-parse", "HEAD")
}

// Tag tags commit rev of repository name.
func (g *GitServer) Tag(t testing.TB, name, tag, rev string) {
	t.Helper()
	g.run(t, g.bare(name), "tag", tag, rev)
}

// Rev is the commit ref (a branch, tag or id) names in repository name, ""
// when there is none.
func (g *GitServer) Rev(t testing.TB, name, ref string) string {
	t.Helper()
	out, err := exec.Command(g.git, "--git-dir", g.bare(name), "rev-parse", "--verify", "--quiet", ref+"^{commit}").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// LookupNetIP resolves github.com (and its subdomains) to 127.0.0.1, where
// the server is, and nothing else: a sprite's egress proxy takes it as its
// resolver.
func (g *GitServer) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host == "github.com" || strings.HasSuffix(host, ".github.com") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, fmt.Errorf("git server: %s does not resolve here", host)
}

// Dial sends github.com's HTTPS port on 127.0.0.1 to the server and refuses
// anything else: a sprite's egress proxy takes it as its dialler.
func (g *GitServer) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if address != "127.0.0.1:443" {
		return nil, fmt.Errorf("git server: no route to %s", address)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", g.Addr)
}

// Proxy starts an HTTP CONNECT proxy on 127.0.0.1 that tunnels every
// CONNECT to github.com:443 to the server, for a process without aod's
// egress proxy (an unsandboxed sprite), and returns its URL.
func (g *GitServer) Proxy(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != "github.com:443" {
			http.Error(w, "this proxy only reaches github.com:443", http.StatusForbidden)
			return
		}
		up, err := g.Dial(r.Context(), "tcp", "127.0.0.1:443")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		done := make(chan struct{})
		go func() { io.Copy(up, brw); up.(*net.TCPConn).CloseWrite(); close(done) }()
		io.Copy(conn, up)
		<-done
		conn.Close()
		up.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
