package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/matryer/is"
)

// The reconnect test of issue 3: a client that hangs up at random points
// and resumes with Last-Event-ID 200 times while a session prints 5 MB gets
// exactly the bytes the script printed, with no gap and no duplicate.

const (
	reconnectWant     = 200       // reconnects before reading to the end
	reconnectMinBytes = 5_000_000 // what the script prints, at least
	reconnectPace     = 700       // lines between the script's pauses
)

// reconnectWords and reconnectPad feed the generator; the words carry
// two- and three-byte UTF-8 characters, each line ends in a four-byte one.
var (
	reconnectWords = []string{"alpha", "βeta", "gamma", "δelta", "épsilon", "zeta", "ηta"}
	reconnectPad   = strings.Repeat("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", 2)[:96]
)

// reconnectLine is line i of the output, exactly as the script's printf
// writes it.
func reconnectLine(i int) string {
	return fmt.Sprintf("%07d %s ü→%s 🚀\n", i, reconnectWords[i%len(reconnectWords)], reconnectPad[:i%97])
}

// reconnectScript returns the bash script printing lines 1..n, pausing
// every reconnectPace lines so the output spreads over a few seconds and
// the client's reconnects happen while the session is live.
func reconnectScript(n int) string {
	return fmt.Sprintf(`words=(%s)
pad='%s'
for ((i = 1; i <= %d; i++)); do
  printf '%%07d %%s ü→%%s 🚀\n' "$i" "${words[i %% %d]}" "${pad:0:i %% 97}"
  if (( i %% %d == 0 )); then sleep 0.05; fi
done
`, strings.Join(reconnectWords, " "), reconnectPad, n, len(reconnectWords), reconnectPace)
}

func TestStreamReconnect(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))

	var expected bytes.Buffer
	lines := 0
	for expected.Len() < reconnectMinBytes {
		lines++
		expected.WriteString(reconnectLine(lines))
	}

	a := apitest.New(t, running)
	tok := a.Token("alice")
	agent := a.ShellAgent(tok)
	id := a.StartSession(tok, apitest.SessionBody(agent, reconnectScript(lines)))

	ctx, cancel := context.WithTimeout(context.Background(), 3*apitest.Patience)
	defer cancel()
	var (
		got        bytes.Buffer // every stdout byte received, in order
		ids        []int64      // the id of every row event received, in order
		lastID     int64        // the id of the last complete event seen: the resume cursor
		reconnects int
		live       int // reconnects made while the session was still running
		cut        int // connections hung up inside the terminal frame
		terminals  []testkit.Frame
		stderr     string
		problems   []string // protocol violations, reported once at the end
	)
	note := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for len(terminals) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("no terminal event after %d reconnects within %s", reconnects, 3*apitest.Patience)
		}
		// How much this connection reads before hanging up: a random
		// number (0-3) of row events, few enough that the reconnects
		// spread over the session, then often a random part of the next
		// frame. After the last reconnect: everything.
		limit, extra := -1, 0
		if reconnects < reconnectWant {
			if st := a.Session(tok, id)["status"]; st == "running" || st == "pending" {
				live++
			}
			limit = rng.Intn(4)
			if rng.Intn(3) > 0 {
				extra = rng.Intn(2000)
			}
		}
		cctx, hangUp := context.WithCancel(ctx)
		req, err := http.NewRequestWithContext(cctx, "GET", a.URL+"/sessions/"+id+"/stream", nil)
		is.NoErr(err) // build the request
		req.Header.Set("Authorization", "Bearer "+tok)
		if lastID > 0 {
			req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
		}
		res, err := a.HTTP.Do(req)
		if err != nil {
			hangUp()
			t.Fatalf("connection %d: %v", reconnects+1, err)
		}
		if res.StatusCode != http.StatusOK {
			hangUp()
			res.Body.Close()
			t.Fatalf("connection %d: status %d", reconnects+1, res.StatusCode)
		}
		br := testkit.NewReader(res.Body)
		rows, first := 0, true
		for limit < 0 || rows < limit {
			f, err := br.NextEvent()
			if err != nil {
				if err != io.EOF || br.Partial() {
					note("connection %d ended inside a frame: %v", reconnects+1, err)
				}
				note("connection %d: the server closed the stream before the terminal event", reconnects+1)
				break
			}
			if first && f.Type() != "start" {
				note("connection %d began with %q, not start", reconnects+1, f.Type())
			}
			first = false
			switch typ := f.Type(); {
			case typ == "start":
			case typ == "turn_start":
				if f.ID != "" {
					note("turn_start with an id: line %s", f.ID)
				}
			case testkit.IsTerminal(typ) && limit >= 0:
				// Before the last reconnect the client hangs up inside
				// the terminal frame: it never dispatches it.
				cut++
				rows = limit
				continue
			case testkit.IsTerminal(typ):
				terminals = append(terminals, f)
			default: // stage and output rows
				rows++
				if f.ID != strconv.FormatInt(f.EventID(), 10) {
					note("event %d has id: line %q", f.EventID(), f.ID)
				}
				if f.EventID() <= lastID {
					note("event id %d after %d: duplicated or out of order", f.EventID(), lastID)
				}
				lastID = f.EventID()
				ids = append(ids, f.EventID())
				if typ == "output" {
					data, _ := f.Data["data"].(string)
					if f.Data["stream"] == "stdout" {
						got.WriteString(data)
					} else {
						stderr += data
					}
				}
			}
			if len(terminals) > 0 {
				// Exactly one terminal event, then the server closes.
				if _, err := br.NextEvent(); err != io.EOF {
					note("the stream went on after the terminal event: %v", err)
				}
				break
			}
		}
		if len(terminals) == 0 {
			br.CutShort(extra)
			reconnects++
		}
		hangUp()
		res.Body.Close()
	}
	t.Logf("%d reconnects (%d while the session ran, %d cut inside the terminal frame), %d row events, %d stdout bytes",
		reconnects, live, cut, len(ids), got.Len())

	is.Equal(problems, []string(nil))               // the stream kept the protocol on every connection
	is.Equal(reconnects, reconnectWant)             // the client reconnected 200 times
	is.Equal(len(terminals), 1)                     // exactly one terminal event, at the end
	is.Equal(terminals[0].Type(), "exit")           // the session ended with exit
	is.Equal(terminals[0].Data["code"], float64(0)) // code 0
	is.Equal(terminals[0].EventID(), lastID)        // the terminal id repeats the last row id
	is.Equal(stderr, "")                            // nothing on stderr
	is.Equal(got.Len(), expected.Len())             // as many bytes as the script printed
	if !bytes.Equal(got.Bytes(), expected.Bytes()) {
		i := 0
		for i < got.Len() && i < expected.Len() && got.Bytes()[i] == expected.Bytes()[i] {
			i++
		}
		t.Logf("first difference at byte %d: got %q, want %q", i,
			got.Bytes()[i:min(i+80, got.Len())], expected.Bytes()[i:min(i+80, expected.Len())])
	}
	is.True(bytes.Equal(got.Bytes(), expected.Bytes())) // exactly the bytes the script printed: no gap, no duplicate

	// The ids the client saw are exactly the session's rows: none missing.
	full := a.Stream(tok, id, apitest.StreamOptions{})
	var all []int64
	for _, e := range full.Events {
		if t := e.Type(); t == "stage" || t == "output" {
			all = append(all, e.EventID())
		}
	}
	is.Equal(ids, all) // every stored row was received exactly once, in order
}
