package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"

	"github.com/aod/aod/docs"
	"github.com/julienschmidt/httprouter"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
)

// apiReference is docs/api.md as HTML, rendered once when the program
// starts rather than on every request.
var apiReference = mustMarkdown(docs.API)

// markdown renders the docs: GitHub-style tables and heading ids for the
// in-page links. Raw HTML in the source is dropped and dangerous link
// schemes are refused (goldmark's defaults; html.WithUnsafe is never set),
// so the output is safe to mark as template.HTML.
var markdown = goldmark.New(
	goldmark.WithExtensions(extension.Table),
	goldmark.WithParserOptions(parser.WithAutoHeadingID()),
)

func renderMarkdown(src string) (template.HTML, error) {
	var buf bytes.Buffer
	if err := markdown.Convert([]byte(src), &buf); err != nil {
		return "", err
	}
	return template.HTML(buf.String()), nil
}

func mustMarkdown(src string) template.HTML {
	h, err := renderMarkdown(src)
	if err != nil {
		panic(fmt.Sprintf("ui: rendering docs/api.md: %v", err))
	}
	return h
}

type docsPage struct {
	Body template.HTML
}

// handleDocs serves the API reference to anyone: the landing page links to
// it before sign-up.
func (u *UI) handleDocs(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	u.render(w, r, http.StatusOK, "docs", s, docsPage{Body: apiReference})
	return nil
}
