package ui

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestMarkdownIsSanitised: raw HTML and script links in the Markdown never
// reach the page, since the rendered doc is trusted as template.HTML.
func TestMarkdownIsSanitised(t *testing.T) {
	is := is.New(t)
	h, err := renderMarkdown("# T\n\n<script>alert(1)</script>\n\nx <img src=x onerror=alert(1)> y\n\n[a](javascript:alert(1))\n")
	is.NoErr(err) // renders
	out := string(h)
	is.True(strings.Contains(out, `<h1 id="t">T</h1>`)) // Markdown becomes HTML
	is.True(!strings.Contains(out, "<script"))          // raw HTML blocks are dropped
	is.True(!strings.Contains(out, "<img"))             // and inline HTML
	is.True(!strings.Contains(out, "javascript:"))      // dangerous link schemes too
	is.True(apiReference != "")                         // the embedded doc rendered at start
}
