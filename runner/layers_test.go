package runner

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// layerFixture is a bubblewrap runner whose sprites have a writable root
// (root, as on CI), so environments get package layers.
func layerFixture(t *testing.T) *fixture {
	t.Helper()
	requireLayers(t)
	realNPM(t)
	f := newFixture(t, Config{Sandbox: SandboxBwrap, ProvisionTimeout: 5 * time.Minute})
	if !f.r.local.Layers() {
		t.Fatal("as root, bubblewrap sprites have a writable root and package layers")
	}
	return f
}

// waitLong is wait for sessions whose provisioning installs packages.
func (f *fixture) waitLong(id string) *store.Session {
	f.t.Helper()
	return f.waitFor(id, 4*time.Minute)
}

// setupMessages are a session's provision_setup stage messages.
func (f *fixture) setupMessages(id string) []string {
	var out []string
	for _, e := range f.events(id) {
		if e.Kind == store.KindStage && e.Stage == stageProvisionSetup && e.Data != "" {
			out = append(out, e.State+": "+e.Data)
		}
	}
	return out
}

func countContaining(list []string, sub string) int {
	n := 0
	for _, s := range list {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

// An environment's apt and npm packages are installed once, for real, into
// its layer: the first session builds it (saying what installs), the
// second starts with the packages in place and installs nothing, and
// neither touched the host's /usr.
func TestPackageLayerBuiltOnceAndReused(t *testing.T) {
	is := is.New(t)
	f := layerFixture(t)
	for _, p := range []string{"/usr/games/cowsay", "/usr/local/bin/semver"} {
		if exists(p) {
			t.Fatalf("this test installs %s into sprites: the host must not have it", p)
		}
	}
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "layered", Networking: store.Networking{Type: "unrestricted"},
		Packages:    map[string][]string{"apt": {"cowsay"}, "npm": {"semver@7.6.3"}},
		SetupScript: "echo setup-ran-here",
	})
	is.NoErr(err) // an environment with apt and npm packages
	script := "/usr/games/cowsay moo | head -2 | tail -1; semver 1.2.3 -i minor\n"
	first := f.run(script, sessionOpts{environmentID: env.ID})
	done := f.waitLong(first.ID)
	is.Equal(done.Status, store.StatusCompleted) // the first session builds the layer and runs (see done.Error)
	out, _ := f.output(first.ID, 1)
	is.Equal(out, "< moo >\n1.3.0\n") // with both packages
	msgs := f.setupMessages(first.ID)
	is.Equal(countContaining(msgs, "installing apt packages: cowsay"), 1)       // it said what it installed
	is.Equal(countContaining(msgs, "installing npm packages: semver@7.6.3"), 1) // manager by manager
	is.Equal(countContaining(msgs, "packages installed into the environment's layer"), 1)
	log, err := f.db.ProvisionLog(f.ctx, f.user.ID, first.ID)
	is.NoErr(err)
	is.True(strings.Contains(log, "setup-ran-here")) // the setup script ran, and its output is in the log
	is.True(strings.Contains(log, "cowsay"))         // as is the build's

	second := f.run(script, sessionOpts{environmentID: env.ID})
	done = f.waitLong(second.ID)
	is.Equal(done.Status, store.StatusCompleted) // the second session runs
	out, _ = f.output(second.ID, 1)
	is.Equal(out, "< moo >\n1.3.0\n") // with the packages
	msgs = f.setupMessages(second.ID)
	is.Equal(countContaining(msgs, "installing"), 0)                            // it installed nothing
	is.Equal(countContaining(msgs, "packages from the environment's layer"), 1) // it says where they came from
	log, err = f.db.ProvisionLog(f.ctx, f.user.ID, second.ID)
	is.NoErr(err)
	is.Equal(log, "setup-ran-here\n") // the setup script still runs in every session

	for _, p := range []string{"/usr/games/cowsay", "/usr/local/bin/semver"} {
		is.True(!exists(p)) // the host's /usr never got the packages
	}
}

// Sessions starting together build their layer once: one builds, the
// others wait for it and say so. A build that fails fails every session
// waiting for it with its error and is not remembered: the next session
// tries again.
func TestPackageLayerSingleFlightAndFailuresNotCached(t *testing.T) {
	is := is.New(t)
	f := layerFixture(t)
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "shared", Networking: store.Networking{Type: "unrestricted"},
		Packages: map[string][]string{"npm": {"semver@7.6.3"}},
	})
	is.NoErr(err)
	var ids []string
	for range 3 {
		ids = append(ids, f.create("semver 2.0.0 -i patch\n", sessionOpts{environmentID: env.ID}).ID)
	}
	for _, id := range ids {
		f.r.Enqueue(id)
	}
	builds, waits := 0, 0
	for _, id := range ids {
		done := f.waitLong(id)
		is.Equal(done.Status, store.StatusCompleted) // every session runs (see done.Error)
		out, _ := f.output(id, 1)
		is.Equal(out, "2.0.1\n") // with the package
		msgs := f.setupMessages(id)
		waited := countContaining(msgs, "which another session started building") > 0
		cached := countContaining(msgs, "packages from the environment's layer") > 0
		switch {
		case waited:
			waits++
		case !cached:
			builds++ // neither waited nor found it: this session's build
		}
	}
	is.Equal(builds, 1) // one build for all three
	is.True(waits >= 1) // at least one session waited for it, saying so

	bad, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "broken", Networking: store.Networking{Type: "unrestricted"},
		Packages: map[string][]string{"npm": {"aod-no-such-package-" + strings.ToLower(t.Name())}},
	})
	is.NoErr(err)
	var wg sync.WaitGroup
	failed := make([]*store.Session, 2)
	for i := range failed {
		id := f.run("echo never\n", sessionOpts{environmentID: bad.ID}).ID
		wg.Add(1)
		go func() { defer wg.Done(); failed[i] = f.waitLong(id) }()
	}
	wg.Wait()
	for _, s := range failed {
		is.Equal(s.Status, store.StatusFailed)                                                    // a failed build fails its sessions
		is.True(strings.Contains(s.Error, "building the environment's package layer: npm: exit")) // with the build's error (see s.Error)
	}
	again := f.run("echo never\n", sessionOpts{environmentID: bad.ID})
	s := f.waitLong(again.ID)
	is.Equal(s.Status, store.StatusFailed)                                             // the next session
	is.Equal(countContaining(f.setupMessages(again.ID), "installing npm packages"), 1) // built again: the failure was not cached
	got, err := local.CollectLayers(f.dir, time.Hour)
	is.NoErr(err)
	is.Equal(len(got), 1) // only the good environment has a layer
	listed, err := f.r.EnvironmentLayers(env.ID)
	is.NoErr(err)
	is.Equal(len(listed), 1)                                  // which its listing shows
	is.True(listed[0].Version == 1 && !listed[0].Building)    // built, for version 1
	is.True(listed[0].Bytes > 0 && !listed[0].Since.IsZero()) // with its size and last use
	listed, err = f.r.EnvironmentLayers(bad.ID)
	is.NoErr(err)
	is.Equal(len(listed), 0) // the failed one lists none
}

// A limited environment with allow_package_managers reaches the package
// registries (what its packages install from) besides its allowed_hosts;
// without it, only those.
func TestLimitedNetworkAllowsPackageManagers(t *testing.T) {
	is := is.New(t)
	r := &Runner{cfg: Config{}}
	sess := &store.Session{Provider: "local"}
	with := &store.Environment{Networking: store.Networking{Type: "limited",
		Config: []byte(`{"allowed_hosts":["api.example.com"],"allow_package_managers":true}`)}}
	n := r.network(sess, with)
	is.True(n.Limited)                                      // limited
	is.Equal(n.Hosts[0], "api.example.com")                 // its own hosts first
	is.True(slices.Contains(n.Hosts, "registry.npmjs.org")) // then npm's registry
	is.True(slices.Contains(n.Hosts, "deb.debian.org"))     // and Debian's mirror
	without := &store.Environment{Networking: store.Networking{Type: "limited",
		Config: []byte(`{"allowed_hosts":["api.example.com"],"allow_package_managers":false}`)}}
	is.Equal(r.network(sess, without).Hosts, []string{"api.example.com"}) // false: only its hosts
}

// goProxy serves one Go module, example.test/hello@v1.0.0 (a command that
// prints "hello from the layer"), as a module proxy on 127.0.0.1, and
// returns its port.
func goProxy(t *testing.T) string {
	t.Helper()
	const mod = "example.test/hello"
	gomod := "module " + mod + "\n\ngo 1.21\n"
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	for name, body := range map[string]string{"go.mod": gomod,
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from the layer\") }\n"} {
		f, err := zw.Create(mod + "@v1.0.0/" + name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(f, body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"/" + mod + "/@v/list":        []byte("v1.0.0\n"),
		"/" + mod + "/@v/v1.0.0.info": []byte(`{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}`),
		"/" + mod + "/@v/v1.0.0.mod":  []byte(gomod),
		"/" + mod + "/@v/v1.0.0.zip":  zipped.Bytes(),
	}
	return serve(t, files, nil)
}

// An environment's go packages are built once, for real, from a module
// proxy of the test's own (no network needed), into the layer: the second
// session runs the command without building it again.
func TestGoPackageLayer(t *testing.T) {
	requireLayers(t)
	goroot := "/usr/local/go"
	if _, err := os.Stat(goroot + "/bin/go"); err != nil {
		t.Fatalf("this test builds with the host's Go at %s (in a sprite's /usr): %v", goroot, err)
	}
	is := is.New(t)
	port := goProxy(t)
	f := newFixture(t, Config{Sandbox: SandboxBwrap, ProvisionTimeout: 5 * time.Minute,
		EgressAllow: []string{"127.0.0.1"}, EgressResolver: dotTest{}})
	is.True(f.r.local.Layers()) // as root, sprites have package layers
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "go", Networking: store.Networking{Type: "unrestricted"},
		Packages: map[string][]string{"go": {"example.test/hello@v1.0.0"}},
		EnvVars: map[string]string{"GOPROXY": "http://goproxy.test:" + port, "GOSUMDB": "off", "GOTOOLCHAIN": "local",
			"PATH": goroot + "/bin:" + "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
	is.NoErr(err) // an environment with a go package from the test's proxy
	first := f.run("hello\n", sessionOpts{environmentID: env.ID})
	done := f.waitLong(first.ID)
	is.Equal(done.Status, store.StatusCompleted) // built and ran (see done.Error)
	out, _ := f.output(first.ID, 1)
	is.Equal(out, "hello from the layer\n")                                                                      // the command, from the layer
	is.Equal(countContaining(f.setupMessages(first.ID), "installing go packages: example.test/hello@v1.0.0"), 1) // built by the first session
	second := f.run("command -v hello; hello\n", sessionOpts{environmentID: env.ID})
	done = f.waitLong(second.ID)
	is.Equal(done.Status, store.StatusCompleted)
	out, _ = f.output(second.ID, 1)
	is.Equal(out, "/usr/local/bin/hello\nhello from the layer\n")          // in /usr/local/bin, from the layer
	is.Equal(countContaining(f.setupMessages(second.ID), "installing"), 0) // not built again
}
