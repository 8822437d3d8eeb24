package testkit_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/matryer/is"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		raw   string
		check func(is *is.I, fs []testkit.Frame)
	}{
		{"an event with an id", "id: 7\ndata: {\"type\": \"output\", \"id\": 7, \"turn\": 2, \"data\": \"hi\"}\n\n", func(is *is.I, fs []testkit.Frame) {
			is.Equal(len(fs), 1)                    // one frame
			is.True(fs[0].HasID && fs[0].ID == "7") // the id: line
			is.Equal(fs[0].EventID(), int64(7))     // the JSON id
			is.Equal(fs[0].Type(), "output")        // the type
			is.Equal(fs[0].Turn(), 2)               // the turn
			is.Equal(fs[0].Str("data"), "hi")       // a string field
			is.Equal(*fs[0].Event().Turn, 2)        // and the typed view
		}},
		{"a heartbeat comment", ": heartbeat\n\n", func(is *is.I, fs []testkit.Frame) {
			is.Equal(len(fs), 1)                            // one frame
			is.True(!fs[0].IsEvent())                       // that carries no event
			is.Equal(fs[0].Comments, []string{"heartbeat"}) // its comment, without the colon
			is.Equal(fs[0].Raw, ": heartbeat")              // and its raw line
		}},
		{"event names and non-JSON data", "event: done\ndata: [DONE]\n\n", func(is *is.I, fs []testkit.Frame) {
			is.Equal(fs[0].Name, "done")                      // the event: field
			is.Equal(fs[0].Text, "[DONE]")                    // the data as sent
			is.True(errors.Is(fs[0].Err, testkit.ErrNotJSON)) // is no JSON object
			is.Equal(fs[0].Data, map[string]any(nil))         // so nothing is decoded
		}},
		{"an empty block and a cut-off one", "\ndata: {}\n\ndata: {\"type\"", func(is *is.I, fs []testkit.Frame) {
			is.Equal(len(fs), 2)      // the empty block is a frame, the unfinished one is not
			is.True(!fs[0].HasData)   // the empty one has no data
			is.Equal(fs[0].Raw, "")   // nor any line
			is.True(fs[1].Err == nil) // {} is a JSON object
		}},
		{"several data lines", "data: a\ndata: b\n\n", func(is *is.I, fs []testkit.Frame) {
			is.Equal(fs[0].Text, "a\nb") // joined by a newline
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(is.New(t), testkit.Parse([]byte(tt.raw)))
		})
	}
}

func TestReaderPartialAndCutShort(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	r := testkit.NewReader(strings.NewReader(": hb\n\ndata: {\"type\": \"start\"}\n\ndata: {\"type\": \"exit\"}\n\ndata: {\"ty"))
	f, err := r.NextEvent()
	is.NoErr(err)               // the first event
	is.Equal(f.Type(), "start") // after the heartbeat
	r.CutShort(1000)            // read into the next frame, never completing it
	_, err = r.Next()
	is.NoErr(err) // the rest of the cut frame ends at its blank line
	_, err = r.Next()
	is.Equal(err, io.EOF) // then the input ends
	is.True(r.Partial())  // inside a frame
}

func TestGoldenAndEventually(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	path := filepath.Join(t.TempDir(), "x.golden")
	is.NoErr(os.WriteFile(path, []byte("same\n"), 0o644)) // a golden file
	testkit.Golden(t, path, []byte("same\n"))             // that matches
	n := 0
	is.True(testkit.Eventually(time.Second, func() bool { n++; return n == 3 }))    // a condition that comes true
	is.True(!testkit.Eventually(30*time.Millisecond, func() bool { return false })) // one that never does
}
