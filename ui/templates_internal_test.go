package ui

import (
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/matryer/is"
)

// copyFS copies the embedded files into a map the test can break.
func copyFS(t *testing.T) fstest.MapFS {
	m := fstest.MapFS{}
	err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embedded, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTemplatesFailAtStart: a missing or broken template stops New, so no
// request ever meets it.
func TestTemplatesFailAtStart(t *testing.T) {
	is := is.New(t)
	_, err := newUI(nil, nil, Config{}, copyFS(t))
	is.NoErr(err) // the embedded templates parse

	missing := copyFS(t)
	delete(missing, "templates/session_detail.html")
	_, err = newUI(nil, nil, Config{}, missing)
	is.True(err != nil)                                      // a missing page fails
	is.True(strings.Contains(err.Error(), "session_detail")) // and names it

	broken := copyFS(t)
	broken["templates/agents.html"] = &fstest.MapFile{Data: []byte(`{{define "title"}}x{{end}}{{define "content"}}{{range}}{{end}}`)}
	_, err = newUI(nil, nil, Config{}, broken)
	is.True(err != nil)                              // a syntax error fails
	is.True(strings.Contains(err.Error(), "agents")) // and names the page

	noStatic := copyFS(t)
	noStatic["templates/dashboard.html"] = &fstest.MapFile{Data: []byte(`{{define "title"}}x{{end}}{{define "content"}}{{static "nope.css"}}{{end}}`)}
	_, err = newUI(nil, nil, Config{}, noStatic)
	is.True(err != nil)                                // a page naming a missing static file fails
	is.True(strings.Contains(err.Error(), "nope.css")) // and names it

	_, err = newUI(nil, nil, Config{Registration: "sometimes"}, copyFS(t))
	is.True(err != nil) // registration must be open or closed
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/agents":          "/ui/agents",
		"/ui/agents?x=1":      "/ui/agents?x=1",
		"":                    "",
		"//evil.example":      "",
		"/\\evil.example":     "",
		"https://evil.com/":   "",
		"ui/agents":           "",
		"/ui/\nx":             "",
		"/\x00//evil.example": "",
		"/ui/\x7f":            "",
	} {
		is := is.New(t)
		is.Equal(safeNext(in), want) // only same-site paths
	}
}
