package testkit

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/matryer/is"
)

// update is the one -update flag of every test binary that imports the
// kit: `go test ./sse/ -update` rewrites that package's golden files.
var update = flag.Bool("update", false, "rewrite golden files with what the tests produce")

// Golden compares got with the golden file at path (relative to the
// package directory, as tests run), byte for byte. With -update it first
// writes got there, making the directory if need be.
func Golden(t testing.TB, path string, got []byte) {
	t.Helper()
	is := is.New(t)
	if *update {
		is.NoErr(os.MkdirAll(filepath.Dir(path), 0o755)) // -update makes the golden file's directory
		is.NoErr(os.WriteFile(path, got, 0o644))         // -update rewrites the golden file
	}
	want, err := os.ReadFile(path)
	is.NoErr(err) // the golden file exists (go test -update writes it)
	if !bytes.Equal(got, want) {
		t.Logf("%s differs from what the test produced (go test -update rewrites it)", path)
	}
	is.Equal(string(got), string(want)) // the output matches the golden file byte for byte
}
