package fakemodel_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/aod/aod/fakemodel"
)

func TestGeminiStreamSSE(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)
	resp, raw := post(t, url+"/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", geminiBody("hello gemini"), "x-goog-api-key", "k")
	is.Equal(resp.StatusCode, http.StatusOK)                       // streamed
	is.Equal(resp.Header.Get("Content-Type"), "text/event-stream") // as SSE
	is.Equal(fm.Requests()[0].API, fakemodel.APIGemini)            // routed to gemini
	is.Equal(fm.Requests()[0].Model, "gemini-2.5-pro")             // model from the path

	events := parseSSE(t, raw)
	is.Equal(len(events), 2) // "fake reply to: hello gemini" in two chunks
	var text string
	for i, e := range events {
		is.Equal(e.Name, "")                                                // data-only lines
		is.Equal(path(e.Data, "candidates", 0, "content", "role"), "model") // from the model
		text += path(e.Data, "candidates", 0, "content", "parts", 0, "text").(string)
		_, ok := path(e.Data, "usageMetadata", "promptTokenCount").(float64)
		is.True(ok) // usage on every chunk
		if i < len(events)-1 {
			is.Equal(path(e.Data, "candidates", 0, "finishReason"), nil) // only the last chunk finishes
		}
	}
	is.Equal(text, "fake reply to: hello gemini") // the default reply
	last := events[len(events)-1].Data
	is.Equal(path(last, "candidates", 0, "finishReason"), "STOP") // the last chunk finishes
	u := last["usageMetadata"].(map[string]any)
	is.Equal(u["totalTokenCount"], u["promptTokenCount"].(float64)+u["candidatesTokenCount"].(float64)) // usage adds up
}

func TestGeminiStreamJSONArrayAndGenerate(t *testing.T) {
	is := is.New(t)
	_, url := start(t, nil)

	resp, raw := post(t, url+"/v1beta/models/gemini-2.5-flash:streamGenerateContent?key=k", geminiBody("as array"))
	is.Equal(resp.StatusCode, http.StatusOK) // answered
	var chunks []map[string]any
	is.NoErr(json.Unmarshal(raw, &chunks))                             // without alt=sse: one JSON array
	is.Equal(len(chunks), 2)                                           // of two chunks
	is.Equal(path(chunks[1], "candidates", 0, "finishReason"), "STOP") // the last finishes

	_, raw = post(t, url+"/v1beta/models/gemini-2.5-flash:generateContent", geminiBody("whole"))
	m := decode(t, raw)
	is.Equal(path(m, "candidates", 0, "content"), map[string]any{"role": "model", "parts": []any{map[string]any{"text": "fake reply to: whole"}}}) // one whole text part
	is.Equal(path(m, "candidates", 0, "finishReason"), "STOP")                                                                                     // finished

	_, raw = post(t, url+"/v1beta/models/gemini-2.5-flash:countTokens", geminiBody("count"))
	n, _ := decode(t, raw)["totalTokens"].(float64)
	is.True(n > 0) // a rough count

	resp, _ = post(t, url+"/v1beta/models/gemini-2.5-flash:embedContent", geminiBody("x"))
	is.Equal(resp.StatusCode, http.StatusNotFound) // methods the CLIs don't use are no route
}

func TestGeminiFunctionCallAndFollowUp(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "run it", API: fakemodel.APIGemini},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "run_shell_command", Input: json.RawMessage(`{"command":"echo hi"}`)}},
	}}}
	fm, url := start(t, script)

	_, raw := post(t, url+"/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", geminiBody("run it"))
	events := parseSSE(t, raw)
	is.Equal(len(events), 1) // a function call comes whole
	call := map[string]any{"name": "run_shell_command", "args": map[string]any{"command": "echo hi"}}
	is.Equal(path(events[0].Data, "candidates", 0, "content", "parts", 0, "functionCall"), call) // name and args
	is.Equal(path(events[0].Data, "candidates", 0, "finishReason"), "STOP")                      // finished

	body := geminiBody("run it")
	body["contents"] = append(body["contents"].([]any),
		obj{"role": "model", "parts": []any{obj{"functionCall": obj{"name": "run_shell_command", "args": obj{"command": "echo hi"}}}}},
		obj{"role": "user", "parts": []any{obj{"functionResponse": obj{"name": "run_shell_command", "response": obj{"output": "hi"}}}}},
	)
	_, raw = post(t, url+"/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", body)
	events = parseSSE(t, raw)
	var text strings.Builder
	for _, e := range events {
		text.WriteString(path(e.Data, "candidates", 0, "content", "parts", 0, "text").(string))
	}
	is.Equal(text.String(), "done: hi")              // the function response ends the turn
	is.Equal(fm.Requests()[1].LastUserMessage, "hi") // what rules saw
}

func TestGeminiStructuredSideQuestion(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{Reply: fakemodel.Reply{Text: "scripted"}}}}
	_, url := start(t, script)
	body := obj{
		"contents": []any{obj{"role": "user", "parts": []any{obj{"text": "Who should speak next?"}}}},
		"generationConfig": obj{
			"responseMimeType": "application/json",
			"responseJsonSchema": obj{"type": "object", "properties": obj{
				"reasoning":    obj{"type": "string"},
				"next_speaker": obj{"type": "string", "enum": []any{"user", "model"}},
			}},
		},
	}
	_, raw := post(t, url+"/v1beta/models/gemini-2.5-flash:generateContent", body)
	var answer map[string]any
	is.NoErr(json.Unmarshal([]byte(path(decode(t, raw), "candidates", 0, "content", "parts", 0, "text").(string)), &answer)) // the answer is JSON
	is.Equal(answer, map[string]any{"reasoning": "fake", "next_speaker": "user"})                                            // that fits the schema
}

func TestGeminiError(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{Reply: fakemodel.Reply{Error: &fakemodel.ErrorReply{Status: 503, Message: "try later"}}}}}
	_, url := start(t, script)
	resp, raw := post(t, url+"/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", geminiBody("x"))
	is.Equal(resp.StatusCode, 503)                                                                                                    // the scripted status
	is.Equal(decode(t, raw), map[string]any{"error": map[string]any{"code": 503.0, "message": "try later", "status": "UNAVAILABLE"}}) // Google's error shape
}
