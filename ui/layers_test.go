package ui_test

import (
	"net/url"
	"os/exec"
	"regexp"
	"testing"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/matryer/is"
)

// An environment's page shows its package layers: none before its first
// session, then the one that session built, with its size and state. On a
// server whose sprites have no writable root it says that every session
// installs the packages itself.
func TestEnvironmentPackageLayers(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	plain := newSite(t) // a runner that only records: no layers
	pv := plain.user("plain")
	env := idOf(t, pv.post("/ui/environments/new", url.Values{"name": {"js"}, "packages_json": {`{"npm": ["semver@7.6.3"]}`}}))
	p := pv.get("/ui/environments/" + env)
	is.True(p.HasText("This server keeps no package layers")) // said plainly
	is.True(!p.Has(`<table class="layers">`))                 // and no table

	s := newSiteWith(t, siteOptions{run: true})
	if !s.Runner.Layers() {
		testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", "package layers need bubblewrap and aod running as root (CI's case)")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		testkit.CannotRun(t, "AOD_REQUIRE_BWRAP", "this test installs an npm package into a layer: npm is not installed")
	}
	v := s.user("layers")
	v.get("/ui/environments/new")
	env = idOf(t, v.post("/ui/environments/new", url.Values{"name": {"js"}, "packages_json": {`{"npm": ["semver@7.6.3"]}`}}))
	p = v.get("/ui/environments/" + env)
	is.True(p.HasText("None built yet: the next session of this environment builds it.")) // before any session

	v.get("/ui/agents/new")
	agent := idOf(t, v.post("/ui/agents/new", url.Values{"name": {"sh"}, "runtime": {"shell"}, "model": {"local/shell"},
		"environment_id": {env}}))
	id := v.startSession(agent, "semver 1.2.3 -i minor")
	var page page
	building := testkit.Eventually(apitest.Patience, func() bool {
		page = v.get("/ui/environments/" + env)
		return page.HasText("building") || page.HasText("in use")
	})
	is.True(building) // the page shows the build, then the layer the session runs over
	sess := s.waitStatus(id, "completed", "failed")
	is.Equal(sess.Status, "completed") // the session ran over its layer (see sess.Error)
	p = v.get("/ui/environments/" + env)
	row := regexp.MustCompile(`<tr><td>v1</td><td>(.*?)</td><td>([0-9.]+ (?:KiB|MiB|GiB))</td><td>last used `).FindStringSubmatch(p.Body)
	is.True(row != nil)                                                         // the built layer, with its size (see p.Body)
	is.True(regexp.MustCompile(`in use|idle`).MatchString(row[1]))              // and its state
	is.Equal(len(regexp.MustCompile(`<tr><td>v`).FindAllString(p.Body, -1)), 1) // one layer

	other := s.user("other")
	is.Equal(other.get("/ui/environments/"+env).Status, 404) // another user's environment stays hidden
}
