package runner

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// The package managers' own registries are not reachable from CI, so these
// tests serve each manager a registry of their own on 127.0.0.1, named
// <something>.test for the sprites' egress proxy, and install from it for
// real with the host's pip, gem and cargo (the sprite's /usr is the host's).

// requireManagerEnv is the variable CI sets so that a package manager's
// layer test fails, not skips, where the manager is missing.
const requireManagerEnv = "AOD_REQUIRE_PACKAGE_MANAGERS"

// requireLayers stops a test that needs package layers where sprites have
// none: a writable root needs bubblewrap and aod running as root.
func requireLayers(t *testing.T) {
	t.Helper()
	requireBwrap(t)
	if os.Geteuid() != 0 {
		testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", "package layers need a writable root, which needs aod to run as root (CI's case)")
	}
}

// requireManager stops a test whose manager's command is not in the
// host's /usr (where a sprite finds it); CI installs it.
func requireManager(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		testkit.CannotRun(t, requireManagerEnv, "%s is not installed (apt-get install %s)", path, pkg)
	}
}

// dotTest resolves every name under .test to 127.0.0.1, where the tests'
// registries listen, and nothing else: a sprite's egress proxy takes it as
// its resolver.
type dotTest struct{}

func (dotTest) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if strings.HasSuffix(host, ".test") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, fmt.Errorf("%s does not resolve here", host)
}

// registryFixture is a bubblewrap runner with package layers whose sprites
// reach the tests' registries on 127.0.0.1.
func registryFixture(t *testing.T) *fixture {
	t.Helper()
	requireLayers(t)
	f := newFixture(t, Config{Sandbox: SandboxBwrap, ProvisionTimeout: 5 * time.Minute,
		EgressAllow: []string{"127.0.0.1"}, EgressResolver: dotTest{}})
	if !f.r.local.Layers() {
		t.Fatal("as root, bubblewrap sprites have a writable root and package layers")
	}
	return f
}

// serve serves files (path → body) on 127.0.0.1 until t ends, and the rest
// with fallback (none: 404), and returns its port.
func serve(t *testing.T, files map[string][]byte, fallback http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if body, ok := files[r.URL.Path]; ok {
			w.Write(body)
			return
		}
		if fallback != nil {
			fallback.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

// layerTwice runs two sessions of env printing script's output: the first
// builds the layer (saying it installs manager's packages), the second
// installs nothing. Both must print want.
func (f *fixture) layerTwice(env *store.Environment, manager, script, want string) {
	f.t.Helper()
	is := is.New(f.t)
	for i, installs := range []int{1, 0} {
		sess := f.run(script, sessionOpts{environmentID: env.ID})
		done := f.waitLong(sess.ID)
		if done.Status != store.StatusCompleted {
			log, _ := f.db.ProvisionLog(f.ctx, f.user.ID, sess.ID)
			f.t.Fatalf("session %d: %s (%s)\nprovisioning log:\n%s", i+1, done.Status, done.Error, log)
		}
		out, _ := f.output(sess.ID, 1)
		is.Equal(out, want) // the package's command ran, from the layer
		msgs := f.setupMessages(sess.ID)
		is.Equal(countContaining(msgs, "installing "+manager+" packages"), installs) // built by the first session only
	}
}

// wheel is a pure-Python wheel of package name at version whose console
// script name prints says.
func wheel(t *testing.T, name, version, says string) []byte {
	t.Helper()
	info := name + "-" + version + ".dist-info/"
	files := [][2]string{
		{name + "/__init__.py", "def main():\n    print(" + fmt.Sprintf("%q", says) + ")\n"},
		{info + "METADATA", "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n"},
		{info + "WHEEL", "Wheel-Version: 1.0\nGenerator: aod-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{info + "entry_points.txt", "[console_scripts]\n" + name + " = " + name + ":main\n"},
	}
	var record strings.Builder
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		sum := sha256.Sum256([]byte(f[1]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f[0], base64.RawURLEncoding.EncodeToString(sum[:]), len(f[1]))
		w, err := zw.Create(f[0])
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f[1])
	}
	record.WriteString(info + "RECORD,,\n")
	w, err := zw.Create(info + "RECORD")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, record.String())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An environment's pip packages are installed once, for real, from a
// package index of the test's own (PIP_INDEX_URL, as a user points pip at
// a mirror), into the layer's system paths.
func TestPipPackageLayer(t *testing.T) {
	requireLayers(t)
	requireManager(t, "/usr/bin/pip3", "python3-pip")
	f := registryFixture(t)
	whl := wheel(t, "aodhello", "1.0.0", "hello from pip")
	sum := sha256.Sum256(whl)
	file := "aodhello-1.0.0-py3-none-any.whl"
	port := serve(t, map[string][]byte{
		"/simple/aodhello/": []byte(`<!DOCTYPE html><html><body><a href="/files/` + file + `#sha256=` +
			hex.EncodeToString(sum[:]) + `">` + file + `</a></body></html>`),
		"/files/" + file: whl,
	}, nil)
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "pip", Networking: store.Networking{Type: "unrestricted"},
		Packages: map[string][]string{"pip": {"aodhello==1.0.0"}},
		EnvVars: map[string]string{"PIP_INDEX_URL": "http://pypi.test:" + port + "/simple/",
			"PIP_TRUSTED_HOST": "pypi.test", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.layerTwice(env, "pip", "command -v aodhello; aodhello\n", "/usr/local/bin/aodhello\nhello from pip\n")
	if _, err := os.Stat("/usr/local/bin/aodhello"); err == nil {
		t.Fatal("the host's /usr/local got the package")
	}
}

// An environment's gem packages are installed once, for real, from a gem
// server of the test's own: a gem built and indexed by the host's RubyGems,
// named as a source the way gem install takes one (--source).
func TestGemPackageLayer(t *testing.T) {
	requireLayers(t)
	requireManager(t, "/usr/bin/gem", "ruby")
	f := registryFixture(t)
	src, idx := t.TempDir(), t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("aodhello.gemspec", `Gem::Specification.new do |s|
  s.name = "aodhello"
  s.version = "1.0.0"
  s.summary = "a test gem"
  s.authors = ["aod"]
  s.license = "MIT"
  s.files = ["bin/aodhello"]
  s.executables = ["aodhello"]
end
`, 0o644)
	write("bin/aodhello", "#!/usr/bin/env ruby\nputs \"hello from gem\"\n", 0o755)
	gem := func(dir string, args ...string) {
		cmd := exec.Command("/usr/bin/gem", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "GEM_HOME="+filepath.Join(dir, ".gems"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gem %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	gem(src, "build", "aodhello.gemspec")
	if err := os.MkdirAll(filepath.Join(idx, "gems"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(src, "aodhello-1.0.0.gem"), filepath.Join(idx, "gems", "aodhello-1.0.0.gem")); err != nil {
		t.Fatal(err)
	}
	gem(idx, "generate_index", "--directory", idx)
	port := serve(t, nil, http.FileServer(http.Dir(idx)))
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "gem", Networking: store.Networking{Type: "unrestricted"},
		Packages: map[string][]string{"gem": {"--clear-sources", "--source=http://gems.test:" + port + "/", "aodhello:1.0.0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.layerTwice(env, "gem", "command -v aodhello; aodhello\n", "/usr/local/bin/aodhello\nhello from gem\n")
}

// crate is the .crate (a gzipped tar) of a binary crate name at version
// that prints says.
func crate(t *testing.T, name, version, says string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for file, body := range map[string]string{
		"Cargo.toml":  "[package]\nname = \"" + name + "\"\nversion = \"" + version + "\"\nedition = \"2021\"\n",
		"src/main.rs": "fn main() { println!(" + fmt.Sprintf("%q", says) + "); }\n",
	} {
		hdr := &tar.Header{Name: name + "-" + version + "/" + file, Mode: 0o644, Size: int64(len(body)),
			ModTime: time.Unix(1700000000, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An environment's cargo packages are built once, for real, from a crate
// registry of the test's own (a git index served by git's http-backend,
// named the default registry through cargo's CARGO_REGISTRIES_* and
// CARGO_REGISTRY_DEFAULT variables), into the layer.
func TestCargoPackageLayer(t *testing.T) {
	requireLayers(t)
	requireManager(t, "/usr/bin/cargo", "cargo")
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("the crate index is a git repository: git is not installed: %v", err)
	}
	execPath, err := exec.Command(git, "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	f := registryFixture(t)
	const name, version = "aodhello", "1.0.0"
	body := crate(t, name, version, "hello from cargo")
	sum := sha256.Sum256(body)

	root, work := t.TempDir(), t.TempDir()
	run := func(dir string, args ...string) {
		cmd := exec.Command(git, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+work,
			"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.com",
			"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	files := map[string][]byte{"/dl/" + name + "/" + version + "/download": body}
	port := serve(t, files, &cgi.Handler{Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:    []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + work},
		Stderr: io.Discard})
	index := filepath.Join(work, "index")
	if err := os.MkdirAll(filepath.Join(index, name[:2], name[2:4]), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, content := range map[string]string{
		"config.json": `{"dl":"http://crates.test:` + port + `/dl"}` + "\n",
		name[:2] + "/" + name[2:4] + "/" + name: `{"name":"` + name + `","vers":"` + version +
			`","deps":[],"cksum":"` + hex.EncodeToString(sum[:]) + `","features":{},"yanked":false}` + "\n",
	} {
		if err := os.WriteFile(filepath.Join(index, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(index, "init", "--quiet", "--initial-branch=master")
	run(index, "add", ".")
	run(index, "commit", "--quiet", "-m", "index")
	run(work, "clone", "--quiet", "--bare", index, filepath.Join(root, "index.git"))

	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "cargo", Networking: store.Networking{Type: "unrestricted"},
		Packages: map[string][]string{"cargo": {name + "@" + version}},
		EnvVars: map[string]string{"CARGO_REGISTRIES_AODTEST_INDEX": "http://crates.test:" + port + "/index.git",
			"CARGO_REGISTRY_DEFAULT": "aodtest"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.layerTwice(env, "cargo", "command -v aodhello; aodhello\n", "/usr/local/bin/aodhello\nhello from cargo\n")
}
