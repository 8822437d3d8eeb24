package ui_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// A client's mistake that reaches a page (not a form's field errors or a
// flash) is the page of its own status with its message, never the 500
// page: here a form over the body limit.
func TestClientMistakesGetTheirOwnPage(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	v := newSite(t).user("big")
	v.get("/ui/agents/new")
	p := v.post("/ui/agents/new", url.Values{"name": {strings.Repeat("a", 5<<20)}, "runtime": {"shell"}, "model": {"local/shell"}})
	is.Equal(p.Status, http.StatusRequestEntityTooLarge)                    // 413, not 500
	is.True(p.Has("Request body too large: the limit is 4 MiB"))            // saying why
	is.True(!p.Has("Something went wrong"))                                 // not the 500 page's copy
	is.Equal(v.get("/ui/agents/nope").Status, http.StatusNotFound)          // a malformed id is a 404
	is.Equal(v.get("/ui/sessions/nope/stream").Status, http.StatusNotFound) // on every page
}
