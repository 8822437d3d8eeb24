package testkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Frame is one block of an event stream: its lines up to a blank line.
type Frame struct {
	Raw      string         // the block's lines joined by "\n", without the blank line
	ID       string         // the id: field, "" when the block has none
	HasID    bool           // whether the block has an id: line
	Name     string         // the event: field (aod's streams have none; model APIs' do)
	Text     string         // the data: field as sent (several data: lines joined by "\n")
	HasData  bool           // whether the block has a data: line; a block without is a comment or empty
	Comments []string       // the comment lines, without their ':' and one space
	Data     map[string]any // Text decoded, when it is a JSON object
	Err      error          // why Text did not decode as a JSON object (nil without data)
}

// IsEvent reports whether the frame carries data (heartbeats do not).
func (f Frame) IsEvent() bool { return f.HasData }

// Type is the data's "type" ("" when absent).
func (f Frame) Type() string { return f.Str("type") }

// EventID is the data's "id" (0 when absent); the id: line is f.ID.
func (f Frame) EventID() int64 { n, _ := f.Data["id"].(float64); return int64(n) }

// Turn is the data's "turn" (0 when absent).
func (f Frame) Turn() int { n, _ := f.Data["turn"].(float64); return int(n) }

// Str is the data's string field key ("" when absent or not a string).
func (f Frame) Str(key string) string { s, _ := f.Data[key].(string); return s }

// Terminal reports whether the frame ends a session stream.
func (f Frame) Terminal() bool { return IsTerminal(f.Type()) }

// IsTerminal reports whether an event type ends a session stream.
func IsTerminal(typ string) bool {
	return typ == "exit" || typ == "error" || typ == "terminated" || typ == "stale"
}

// Event is a session stream event's data, typed; pointers tell an absent
// field from a zero one.
type Event struct {
	Type       string `json:"type"`
	ID         *int64 `json:"id"`
	Turn       *int   `json:"turn"`
	Stream     string `json:"stream"`
	Data       string `json:"data"`
	Stage      string `json:"stage"`
	State      string `json:"state"`
	DurationMS *int64 `json:"duration_ms"`
	Message    string `json:"message"`
	Code       *int   `json:"code"`
	Runtime    string `json:"runtime"`
	Provider   string `json:"provider"`
	SessionID  string `json:"session_id"`
}

// Event is the frame's data as a session event (zero when it is not one).
func (f Frame) Event() Event { e, _ := f.DecodeEvent(); return e }

// DecodeEvent decodes the frame's data as a session event; the error says
// why it is not one (a field of the wrong JSON type, say; nil without
// data).
func (f Frame) DecodeEvent() (Event, error) {
	var e Event
	if !f.HasData {
		return e, nil
	}
	err := json.Unmarshal([]byte(f.Text), &e)
	return e, err
}

// ErrNotJSON is what NextEvent and Read report for a data: field that is
// not a JSON object; aod's session streams never send one.
var ErrNotJSON = errors.New("data is not a JSON object")

// parseBlock reads a block's lines the way the event-stream format says:
// "field: value" (one space after the colon dropped), ":" starts a comment.
func parseBlock(lines []string) Frame {
	f := Frame{Raw: strings.Join(lines, "\n")}
	var data []string
	for _, l := range lines {
		if c, ok := strings.CutPrefix(l, ":"); ok {
			f.Comments = append(f.Comments, strings.TrimPrefix(c, " "))
			continue
		}
		name, value, _ := strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			f.ID, f.HasID = value, true
		case "event":
			f.Name = value
		case "data":
			data = append(data, value)
		}
	}
	if data != nil {
		f.HasData = true
		f.Text = strings.Join(data, "\n")
		if err := json.Unmarshal([]byte(f.Text), &f.Data); err != nil {
			f.Data, f.Err = nil, fmt.Errorf("%w: %q: %v", ErrNotJSON, f.Text, err)
		} else if f.Data == nil {
			f.Err = fmt.Errorf("%w: %q", ErrNotJSON, f.Text)
		}
	}
	return f
}

// Parse splits a whole stream into its blocks; bytes after the last blank
// line, an unfinished block, are left out.
func Parse(raw []byte) []Frame {
	r := NewReader(bytes.NewReader(raw))
	var out []Frame
	for {
		f, err := r.Next()
		if err != nil {
			return out
		}
		out = append(out, f)
	}
}

// Reader reads an event stream block by block.
type Reader struct {
	br      *bufio.Reader
	partial bool   // the input ended inside a block
	keep    bool   // record the bytes read in raw
	raw     []byte // with keep, every byte of the blocks read so far
}

// NewReader reads the stream r.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 1<<17)} }

// Next returns the next block, comments and empty blocks included. At the
// end of the input it returns io.EOF (or the read error); Partial then
// says whether the input stopped inside a block.
func (r *Reader) Next() (Frame, error) {
	var lines []string
	for {
		line, err := r.br.ReadString('\n')
		if r.keep {
			r.raw = append(r.raw, line...)
		}
		if err != nil {
			r.partial = len(lines) > 0 || line != ""
			return Frame{}, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			return parseBlock(lines), nil
		}
		lines = append(lines, line)
	}
}

// NextEvent returns the next block that carries data, skipping heartbeat
// comments; data that is not a JSON object is an ErrNotJSON.
func (r *Reader) NextEvent() (Frame, error) {
	for {
		f, err := r.Next()
		if err != nil {
			return f, err
		}
		if !f.HasData {
			continue
		}
		return f, f.Err
	}
}

// Partial reports whether the input ended inside a block (after Next or
// NextEvent returned an error).
func (r *Reader) Partial() bool { return r.partial }

// CutShort reads up to n more bytes without ever completing a block, as a
// client does that hangs up somewhere inside the next event.
func (r *Reader) CutShort(n int) {
	var prev byte
	for range n {
		b, err := r.br.Peek(1)
		if err != nil {
			return
		}
		if b[0] == '\n' && prev == '\n' {
			return // that byte would end a block
		}
		prev = b[0]
		r.br.ReadByte()
	}
}

// Transcript is what one request for an event stream got.
type Transcript struct {
	Status int
	Header http.Header
	Raw    []byte         // every byte read: the body, or the blocks up to the hang-up
	Events []Frame        // the blocks that carry data, in order (heartbeats left out)
	Closed bool           // the server ended the response
	Body   map[string]any // a non-200 answer's JSON body
}

// Last is the last event (zero when there is none).
func (s Transcript) Last() Frame {
	if len(s.Events) == 0 {
		return Frame{}
	}
	return s.Events[len(s.Events)-1]
}

// Types lists the events' types in order.
func (s Transcript) Types() []string { return Types(s.Events) }

// Types lists the frames' data types in order.
func Types(frames []Frame) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = f.Type()
	}
	return out
}

// Output concatenates the data of the output events on stream (stdout or
// stderr) of turn (0: every turn).
func (s Transcript) Output(stream string, turn int) string {
	var b strings.Builder
	for _, e := range s.Events {
		if e.Type() != "output" || e.Str("stream") != stream || (turn != 0 && e.Turn() != turn) {
			continue
		}
		b.WriteString(e.Str("data"))
	}
	return b.String()
}

// Read sends req and reads the event stream it answers until the server
// ends it, or until stop (when not nil) returns true for an event: the
// client then hangs up. A non-200 answer is read whole into Raw and Body.
// The error is the request's, or what broke the stream off (a read error,
// the request's context ending, data that is not JSON); the transcript
// holds what came before.
func Read(client *http.Client, req *http.Request, stop func(Frame) bool) (Transcript, error) {
	res, err := client.Do(req)
	if err != nil {
		return Transcript{}, err
	}
	defer res.Body.Close()
	out := Transcript{Status: res.StatusCode, Header: res.Header}
	if res.StatusCode != http.StatusOK {
		out.Raw, err = io.ReadAll(res.Body)
		_ = json.Unmarshal(out.Raw, &out.Body)
		out.Closed = err == nil
		return out, err
	}
	r := NewReader(res.Body)
	r.keep = true
	for {
		f, err := r.NextEvent()
		out.Raw = r.raw
		if err != nil {
			if err == io.EOF {
				out.Closed = true
				return out, nil
			}
			if ctxErr := req.Context().Err(); ctxErr != nil {
				err = ctxErr
			}
			return out, err
		}
		out.Events = append(out.Events, f)
		if stop != nil && stop(f) {
			return out, nil
		}
	}
}

// Get builds a GET for url with the given headers under ctx.
func Get(ctx context.Context, url string, header map[string]string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req, nil
}

// StreamPatience is how long a Stream waits for its next block by
// default: a deadlock guard, not a latency assertion.
const StreamPatience = 5 * time.Second

// Stream is an open session event stream whose blocks arrive as they are
// sent, for tests that act between events.
type Stream struct {
	Response *http.Response
	Patience time.Duration // bound of each wait (default StreamPatience)
	frames   <-chan Frame
}

// Connect opens the stream at url with the given headers; the connection
// closes when ctx ends or the test does.
func Connect(t testing.TB, ctx context.Context, url string, header map[string]string) *Stream {
	t.Helper()
	req, err := Get(ctx, url, header)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); resp.Body.Close() })
	frames := make(chan Frame)
	go func() {
		defer close(frames)
		r := NewReader(resp.Body)
		for {
			f, err := r.Next()
			if err != nil {
				return
			}
			select {
			case frames <- f:
			case <-done:
				return
			}
		}
	}()
	return &Stream{Response: resp, Patience: StreamPatience, frames: frames}
}

// streamErr is what makes a block's data no session event.
func (f Frame) streamErr() error {
	if f.Err != nil {
		return f.Err
	}
	_, err := f.DecodeEvent()
	return err
}

// Next returns the stream's next block, failing the test if the stream
// closes or stalls, or the block's data is not a session event.
func (s *Stream) Next(t testing.TB) Frame {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			t.Fatal("stream closed early")
		}
		if err := f.streamErr(); err != nil {
			t.Fatalf("bad JSON in %q: %v", f.Raw, err)
		}
		return f
	case <-time.After(s.Patience):
		t.Fatal("no frame within the deadline")
	}
	panic("unreachable")
}

// NextEvent is Next skipping heartbeat comments.
func (s *Stream) NextEvent(t testing.TB) Frame {
	t.Helper()
	for {
		if f := s.Next(t); f.HasData {
			return f
		}
	}
}

// Rest reads blocks until the server closes the stream.
func (s *Stream) Rest(t testing.TB) []Frame {
	t.Helper()
	var out []Frame
	deadline := time.After(s.Patience)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				return out
			}
			if err := f.streamErr(); err != nil {
				t.Fatalf("bad JSON in %q: %v", f.Raw, err)
			}
			out = append(out, f)
		case <-deadline:
			t.Fatal("stream did not close within the deadline")
		}
	}
}
