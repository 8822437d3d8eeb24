// Package docs ships aod's user documentation in the binary. api.md here is
// the one copy of the API reference: the README links to it and the web UI
// renders it at /ui/docs (go:embed cannot reach outside a package's
// directory, so the file's own directory embeds it).
package docs

import _ "embed"

// API is docs/api.md, the HTTP API reference, as Markdown.
//
//go:embed api.md
var API string
