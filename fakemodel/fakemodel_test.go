package fakemodel_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/aod/aod/fakemodel"
	"github.com/aod/aod/internal/testkit"
)

// fixedNow makes "created" timestamps, and so golden transcripts, stable.
var fixedNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// start serves a fake on a real loopback port.
func start(t *testing.T, script *fakemodel.Script) (*fakemodel.Server, string) {
	t.Helper()
	fm := fakemodel.New(script)
	fm.SetNow(fixedNow)
	ts := httptest.NewServer(fm)
	t.Cleanup(ts.Close)
	return fm, ts.URL
}

// post sends body (JSON-encoded unless it is a string) and returns the
// response, status and raw body.
func post(t *testing.T, url string, body any, header ...string) (*http.Response, []byte) {
	t.Helper()
	b, ok := body.(string)
	if !ok {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		b = string(raw)
	}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// sseEvent is one server-sent event: its "event:" name in Name ("" when
// absent), its data as sent in Text and decoded as JSON in Data (nil for
// non-JSON data such as "[DONE]").
type sseEvent = testkit.Frame

// parseSSE splits a stream into events, failing on anything that isn't
// "event:"/"data:" lines separated by blank lines.
func parseSSE(t *testing.T, raw []byte) []sseEvent {
	t.Helper()
	if !strings.HasSuffix(string(raw), "\n\n") {
		t.Fatalf("stream does not end with a blank line: %q", raw)
	}
	events := testkit.Parse(raw)
	for _, ev := range events {
		for _, line := range strings.Split(ev.Raw, "\n") {
			if !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, "data: ") {
				t.Fatalf("unexpected SSE line %q", line)
			}
		}
		if ev.Text != "[DONE]" && ev.Err != nil {
			t.Fatalf("event data is not a JSON object: %q: %v", ev.Text, ev.Err)
		}
	}
	return events
}

func names(events []sseEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Name
	}
	return out
}

// dataTypes lists each event's data "type" field.
func dataTypes(events []sseEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i], _ = e.Data["type"].(string)
	}
	return out
}

// repeat returns n copies of s, to spell expected event sequences.
func repeat(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func seq(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p)
		case []string:
			out = append(out, p...)
		}
	}
	return out
}

func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", raw, err)
	}
	return m
}

// path walks decoded JSON by keys and list indexes: path(m, "a", 0, "b").
func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestUnknownRouteIs404AndRecorded(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)

	resp, raw := post(t, url+"/v2/whatever?x=1", `{}`)
	is.Equal(resp.StatusCode, http.StatusNotFound)                                                       // unknown path answers 404
	is.Equal(resp.Header.Get("Content-Type"), "application/json")                                        // as JSON
	is.Equal(path(decode(t, raw), "error", "type"), "not_found")                                         // error type
	is.Equal(path(decode(t, raw), "error", "message"), "fake model API: no route for POST /v2/whatever") // names method and path

	resp, _ = get(t, url+"/v1/messages")
	is.Equal(resp.StatusCode, http.StatusNotFound) // a known path with the wrong method is no route either

	reqs := fm.Requests()
	is.Equal(len(reqs), 2)                      // both recorded
	is.Equal(reqs[0].API, fakemodel.APIUnknown) // recorded as unknown
	is.Equal(reqs[0].Method, http.MethodPost)   // with its method
	is.Equal(reqs[0].Path, "/v2/whatever?x=1")  // path includes the query
	is.Equal(string(reqs[0].Body), `{}`)        // and the body
	is.Equal(reqs[1].API, fakemodel.APIUnknown) // wrong method recorded as unknown
	is.Equal(reqs[1].Method, http.MethodGet)    // with its method
}

func TestProbe(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)
	req, _ := http.NewRequest(http.MethodHead, url+"/", nil)
	req.Header.Set("User-Agent", "Bun/1.4.0")
	resp, _ := do(t, req)
	is.Equal(resp.StatusCode, http.StatusOK)           // Claude Code's HEAD / preconnect is answered
	is.Equal(fm.Requests()[0].API, fakemodel.APIProbe) // and recorded as a probe, not unknown
}

func TestRequestsRecordedAndReset(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)

	post(t, url+"/v1/messages?beta=true", anthropicBody("first", false), "x-api-key", "anything")
	post(t, url+"/v1/responses", responsesBody("second", false), "Authorization", "Bearer k")
	reqs := fm.Requests()
	is.Equal(len(reqs), 2)                                    // two requests recorded
	is.Equal(reqs[0].Path, "/v1/messages?beta=true")          // in order, query kept
	is.Equal(reqs[0].API, fakemodel.APIAnthropic)             // routed to anthropic
	is.Equal(reqs[0].Header.Get("x-api-key"), "anything")     // headers recorded
	is.Equal(reqs[0].Model, "claude-sonnet-4-6")              // model recorded
	is.Equal(reqs[0].LastUserMessage, "first")                // last user message recorded
	is.Equal(reqs[1].API, fakemodel.APIOpenAIResponses)       // second routed to responses
	is.True(bytes.Contains(reqs[1].Body, []byte(`"second"`))) // body recorded

	reqs[0].Body[0] = 'X'
	is.Equal(fm.Requests()[0].Body[0], byte('{')) // Requests returns copies

	fm.Reset()
	is.Equal(len(fm.Requests()), 0) // Reset forgets requests
}

func TestGzipBody(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	raw, _ := json.Marshal(anthropicBody("zipped", false))
	zw.Write(raw)
	zw.Close()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/messages", &buf)
	req.Header.Set("Content-Encoding", "gzip")
	resp, body := do(t, req)
	is.Equal(resp.StatusCode, http.StatusOK)                                       // gzip body accepted
	is.Equal(path(decode(t, body), "content", 0, "text"), "fake reply to: zipped") // and understood
	is.Equal(fm.Requests()[0].Body, raw)                                           // recorded decompressed
}

// big returns n bytes of filler standing in for a CLI's system prompt.
func big(n int) string {
	return strings.Repeat("You are a helpful agent. Follow the rules. ", n/43+1)[:n]
}

func TestLargeBodies(t *testing.T) {
	const size = 200 << 10
	sys := big(size)
	for _, tc := range []struct {
		name, path string
		body       any
		text       func(raw []byte) any
	}{
		{"anthropic", "/v1/messages", obj{
			"model": "claude-sonnet-4-6", "max_tokens": 100, "system": sys,
			"tools":    []any{obj{"name": "Bash"}},
			"messages": []any{obj{"role": "user", "content": "needle in a haystack"}},
		}, func(raw []byte) any { return path(decodeRaw(raw), "content", 0, "text") }},
		{"responses", "/v1/responses", obj{
			"model": "gpt-4.1", "instructions": sys,
			"input": []any{obj{"type": "message", "role": "user", "content": []any{obj{"type": "input_text", "text": "needle in a haystack"}}}},
		}, func(raw []byte) any { return path(decodeRaw(raw), "output", 0, "content", 0, "text") }},
		{"chat", "/v1/chat/completions", obj{
			"model":    "gpt-4.1",
			"messages": []any{obj{"role": "system", "content": sys}, obj{"role": "user", "content": "needle in a haystack"}},
		}, func(raw []byte) any { return path(decodeRaw(raw), "choices", 0, "message", "content") }},
		{"gemini", "/v1beta/models/gemini-2.5-pro:generateContent", obj{
			"systemInstruction": obj{"parts": []any{obj{"text": sys}}},
			"contents":          []any{obj{"role": "user", "parts": []any{obj{"text": "needle in a haystack"}}}},
		}, func(raw []byte) any { return path(decodeRaw(raw), "candidates", 0, "content", "parts", 0, "text") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			fm, url := start(t, nil)
			resp, raw := post(t, url+tc.path, tc.body)
			is.Equal(resp.StatusCode, http.StatusOK)                      // a 200 KB body is fine
			is.Equal(tc.text(raw), "fake reply to: needle in a haystack") // and its last user message found
			is.True(len(fm.Requests()[0].Body) > size)                    // recorded whole
		})
	}
}

func decodeRaw(raw []byte) any {
	var v any
	json.Unmarshal(raw, &v)
	return v
}

type obj = map[string]any

func TestConcurrentRequests(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{
		{Match: fakemodel.Match{Contains: "counted", Nth: 10}, Reply: fakemodel.Reply{Text: "tenth"}},
	}}
	fm, url := start(t, script)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	tenth := make(chan string, 4*n)
	for i := range n {
		for _, api := range []string{"anthropic", "responses", "chat", "gemini"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := fmt.Sprintf("counted %s %d", api, i)
				text, err := ask(url, api, msg)
				switch {
				case err != nil:
					errs <- err
				case text == "tenth":
					tenth <- msg
				case text != "fake reply to: "+msg:
					errs <- fmt.Errorf("%s: got %q", msg, text)
				}
			}()
		}
		wg.Add(1)
		go func() { defer wg.Done(); fm.Requests() }()
	}
	wg.Wait()
	close(errs)
	close(tenth)
	for err := range errs {
		is.NoErr(err) // every concurrent request got its own reply
	}
	is.Equal(len(tenth), 1)           // the nth rule fired exactly once
	is.Equal(len(fm.Requests()), 4*n) // every request recorded
}

// ask sends msg through one API, streaming, and returns the reassembled text.
func ask(url, api, msg string) (string, error) {
	var p string
	var body any
	switch api {
	case "anthropic":
		p, body = "/v1/messages", anthropicBody(msg, true)
	case "responses":
		p, body = "/v1/responses", responsesBody(msg, true)
	case "chat":
		p, body = "/v1/chat/completions", chatBody(msg, true)
	case "gemini":
		p, body = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", geminiBody(msg)
	}
	raw, _ := json.Marshal(body)
	resp, err := http.Post(url+p, "application/json", bytes.NewReader(raw))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var text strings.Builder
	for _, ev := range testkit.Parse(out) {
		if !ev.HasData || ev.Text == "[DONE]" {
			continue
		}
		if ev.Err != nil {
			return "", ev.Err
		}
		v := any(ev.Data)
		for _, keys := range [][]any{
			{"delta", "text"}, // anthropic text_delta
			{"choices", 0, "delta", "content"},
			{"candidates", 0, "content", "parts", 0, "text"},
		} {
			if s, ok := path(v, keys...).(string); ok {
				text.WriteString(s)
			}
		}
		if path(v, "type") == "response.output_text.delta" {
			text.WriteString(path(v, "delta").(string))
		}
	}
	return text.String(), nil
}

// Request bodies shaped like the CLIs' (tools offered, so they are agent-loop
// calls, not background calls).

func anthropicBody(msg string, stream bool) obj {
	return obj{
		"model": "claude-sonnet-4-6", "max_tokens": 1024, "stream": stream,
		"system": []any{obj{"type": "text", "text": "You are Claude Code."}},
		"tools":  []any{obj{"name": "Bash", "input_schema": obj{"type": "object"}}},
		"messages": []any{obj{"role": "user", "content": []any{
			obj{"type": "text", "text": "<system-reminder>\nSkills are available.\n</system-reminder>"},
			obj{"type": "text", "text": msg},
		}}},
	}
}

func responsesBody(msg string, stream bool) obj {
	return obj{
		"model": "gpt-4.1", "stream": stream, "instructions": "You are Codex.",
		"tools": []any{obj{"type": "function", "name": "shell"}},
		"input": []any{
			obj{"type": "message", "role": "developer", "content": []any{obj{"type": "input_text", "text": "sandbox rules"}}},
			obj{"type": "message", "role": "user", "content": []any{obj{"type": "input_text", "text": "<environment_context>\n  <cwd>/workspace</cwd>\n</environment_context>"}}},
			obj{"type": "message", "role": "user", "content": []any{obj{"type": "input_text", "text": msg}}},
		},
	}
}

func chatBody(msg string, stream bool) obj {
	return obj{
		"model": "gpt-4.1", "stream": stream,
		"tools": []any{obj{"type": "function", "function": obj{"name": "bash"}}},
		"messages": []any{
			obj{"role": "system", "content": "You are opencode."},
			obj{"role": "user", "content": []any{obj{"type": "text", "text": msg}}},
		},
	}
}

func geminiBody(msg string) obj {
	return obj{
		"systemInstruction": obj{"parts": []any{obj{"text": "You are Gemini CLI."}}},
		"tools":             []any{obj{"functionDeclarations": []any{obj{"name": "run_shell_command"}}}},
		"contents": []any{
			obj{"role": "user", "parts": []any{obj{"text": "This is the Gemini CLI. Context follows."}}},
			obj{"role": "model", "parts": []any{obj{"text": "Got it."}}},
			obj{"role": "user", "parts": []any{obj{"text": msg}}},
		},
	}
}
