package ui_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestDocs: the API reference ships with aod and is served at /ui/docs.
func TestDocs(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	for name, v := range map[string]*visitor{"anonymous": s.visitor(), "logged in": s.user("reader")} {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			p := v.get("/ui/docs")
			is.Equal(p.Status, http.StatusOK)                                     // the docs page is public
			is.True(strings.HasPrefix(p.Header.Get("Content-Type"), "text/html")) // HTML
			is.True(p.Has(`<h1 id="aod-http-api">aod HTTP API</h1>`))             // the doc's title, rendered
			is.True(p.Has(`<h2 id="stream">Stream</h2>`))                         // a section heading with its anchor
			is.True(p.Has("<code>/sessions/{id}/stream</code>"))                  // a route from the doc
			is.True(p.Has("<table>"))                                             // tables are rendered
			is.True(p.Has(`href="#errors"`))                                      // in-page links work
			is.True(!p.Has(`href="http`))                                         // and nothing links off the site
		})
	}
}

// TestNoExternalLinks: the pages link only to what aod serves itself.
func TestNoExternalLinks(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v := s.user("links")
	pages := map[string]page{
		"landing, anonymous": s.visitor().get("/"),
		"landing, logged in": v.get("/"),
		"dashboard":          v.get("/ui/"),
	}
	for name, p := range pages {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			is.Equal(p.Status, http.StatusOK) // the page renders
			is.True(p.Has(`href="/ui/docs"`)) // its Docs link is aod's own page
			is.True(!p.Has(`href="http`))     // and no link leaves the site
			is.True(!p.Has(`href="//`))       // not even scheme-relative
		})
	}
}
