package fakemodel_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/aod/aod/fakemodel"
)

func TestAnthropicStreamText(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)
	resp, raw := post(t, url+"/v1/messages?beta=true", anthropicBody("hello there", true), "x-api-key", "sk-whatever")
	is.Equal(resp.StatusCode, http.StatusOK)                       // streamed
	is.Equal(resp.Header.Get("Content-Type"), "text/event-stream") // as SSE
	is.Equal(fm.Requests()[0].API, fakemodel.APIAnthropic)         // routed to anthropic
	is.Equal(fm.Requests()[0].LastUserMessage, "hello there")      // system reminder skipped

	events := parseSSE(t, raw)
	// "fake reply to: hello there" is 26 runes: two 16-rune deltas.
	want := seq("message_start", "content_block_start", repeat(2, "content_block_delta"),
		"content_block_stop", "message_delta", "message_stop")
	is.Equal(names(events), want)     // the exact event sequence
	is.Equal(dataTypes(events), want) // each data carries its event's type

	msg := events[0].Data["message"].(map[string]any)
	is.True(strings.HasPrefix(msg["id"].(string), "msg_")) // message id
	is.Equal(msg["type"], "message")                       // message type
	is.Equal(msg["role"], "assistant")                     // role
	is.Equal(msg["model"], "claude-sonnet-4-6")            // the request's model
	is.Equal(msg["content"], []any{})                      // empty content
	is.Equal(msg["stop_reason"], nil)                      // no stop reason yet
	_, ok := path(msg, "usage", "input_tokens").(float64)
	is.True(ok) // usage has input_tokens
	_, ok = path(msg, "usage", "output_tokens").(float64)
	is.True(ok) // usage has output_tokens

	is.Equal(path(events[1].Data, "index"), 0.0)                                                // first block
	is.Equal(path(events[1].Data, "content_block"), map[string]any{"type": "text", "text": ""}) // an empty text block
	var text string
	for _, e := range events[2:4] {
		is.Equal(path(e.Data, "index"), 0.0)                  // delta for block 0
		is.Equal(path(e.Data, "delta", "type"), "text_delta") // text delta
		text += path(e.Data, "delta", "text").(string)
	}
	is.Equal(text, "fake reply to: hello there") // default reply echoes the last user message
	is.Equal(path(events[4].Data, "index"), 0.0) // block 0 stops

	is.Equal(path(events[5].Data, "delta"), map[string]any{"stop_reason": "end_turn", "stop_sequence": nil}) // end_turn
	_, ok = path(events[5].Data, "usage", "output_tokens").(float64)
	is.True(ok) // message_delta reports output tokens
}

func TestAnthropicStreamToolCall(t *testing.T) {
	is := is.New(t)
	input := `{"command":"echo \"hi\" && ls -la /workspace","description":"list"}`
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "list the files"},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "Bash", Input: json.RawMessage(input)}},
	}}}
	_, url := start(t, script)
	_, raw := post(t, url+"/v1/messages", anthropicBody("please list the files", true))
	events := parseSSE(t, raw)

	n := len(events) - 5 // message_start, block start, block stop, message_delta, message_stop
	is.True(n >= 3)      // the input arrives in several partial deltas
	want := seq("message_start", "content_block_start", repeat(n, "content_block_delta"),
		"content_block_stop", "message_delta", "message_stop")
	is.Equal(names(events), want) // one tool_use block, the exact sequence

	block := path(events[1].Data, "content_block").(map[string]any)
	is.Equal(block["type"], "tool_use")                        // a tool_use block
	is.True(strings.HasPrefix(block["id"].(string), "toolu_")) // with a tool id
	is.Equal(block["name"], "Bash")                            // the scripted tool
	is.Equal(block["input"], map[string]any{})                 // input streams separately

	var partial strings.Builder
	for _, e := range events[2 : 2+n] {
		is.Equal(path(e.Data, "delta", "type"), "input_json_delta") // JSON deltas
		partial.WriteString(path(e.Data, "delta", "partial_json").(string))
	}
	first := path(events[2].Data, "delta", "partial_json").(string)
	is.True(!json.Valid([]byte(first)))                                            // a fragment is partial JSON, not a whole value
	is.Equal(partial.String(), input)                                              // reassembles to the scripted input
	is.Equal(path(events[len(events)-2].Data, "delta", "stop_reason"), "tool_use") // stops for the tool
	is.Equal(path(events[len(events)-2].Data, "delta", "stop_sequence"), nil)      // no stop sequence
}

func TestAnthropicTextAndToolCall(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Reply: fakemodel.Reply{Text: "Let me look.", ToolCall: &fakemodel.ToolCall{Name: "Read"}},
	}}}
	_, url := start(t, script)
	_, raw := post(t, url+"/v1/messages", anthropicBody("go", true))
	events := parseSSE(t, raw)
	want := seq("message_start",
		"content_block_start", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop")
	is.Equal(names(events), want)                                      // a text block, then a tool block
	is.Equal(path(events[4].Data, "index"), 1.0)                       // the tool block is block 1
	is.Equal(path(events[5].Data, "delta", "partial_json"), "{}")      // absent input is {}
	is.Equal(path(events[7].Data, "delta", "stop_reason"), "tool_use") // stops for the tool
}

func TestAnthropicNonStream(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "tool"},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "Bash", Input: json.RawMessage(`{"command": "pwd"}`)}},
	}}}
	_, url := start(t, script)

	resp, raw := post(t, url+"/v1/messages", anthropicBody("say something", false))
	is.Equal(resp.StatusCode, http.StatusOK)                      // answered
	is.Equal(resp.Header.Get("Content-Type"), "application/json") // as JSON
	m := decode(t, raw)
	is.Equal(m["type"], "message")                                                                        // a message
	is.Equal(m["role"], "assistant")                                                                      // from the assistant
	is.Equal(m["model"], "claude-sonnet-4-6")                                                             // the request's model
	is.Equal(m["content"], []any{map[string]any{"type": "text", "text": "fake reply to: say something"}}) // one text block
	is.Equal(m["stop_reason"], "end_turn")                                                                // end_turn

	_, raw = post(t, url+"/v1/messages", anthropicBody("use a tool", false))
	m = decode(t, raw)
	is.Equal(path(m, "content", 0, "type"), "tool_use")                        // a tool_use block
	is.Equal(path(m, "content", 0, "name"), "Bash")                            // the scripted tool
	is.Equal(path(m, "content", 0, "input"), map[string]any{"command": "pwd"}) // with its input
	is.Equal(m["stop_reason"], "tool_use")                                     // stops for the tool
}

func TestAnthropicCountTokens(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)
	resp, raw := post(t, url+"/v1/messages/count_tokens?beta=true", anthropicBody("count me", false))
	is.Equal(resp.StatusCode, http.StatusOK) // answered
	n, ok := decode(t, raw)["input_tokens"].(float64)
	is.True(ok && n > 0)                                   // a rough positive count
	is.Equal(fm.Requests()[0].API, fakemodel.APIAnthropic) // recorded as anthropic
}

func TestAnthropicError(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{
		{Match: fakemodel.Match{Contains: "flaky", Nth: 1}, Reply: fakemodel.Reply{Error: &fakemodel.ErrorReply{Status: 529, Message: "overloaded"}}},
		{Match: fakemodel.Match{Contains: "flaky"}, Reply: fakemodel.Reply{Text: "second try"}},
	}}
	_, url := start(t, script)
	resp, raw := post(t, url+"/v1/messages", anthropicBody("flaky", true))
	is.Equal(resp.StatusCode, 529)                                                                                                          // the scripted status
	is.Equal(decode(t, raw), map[string]any{"type": "error", "error": map[string]any{"type": "overloaded_error", "message": "overloaded"}}) // Anthropic's error shape

	_, raw = post(t, url+"/v1/messages", anthropicBody("flaky", false))
	is.Equal(path(decode(t, raw), "content", 0, "text"), "second try") // the retry succeeds
}

func TestAnthropicToolResultFollowUp(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "run it"},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "Bash", Input: json.RawMessage(`{"command":"echo hi"}`)}},
	}}}
	fm, url := start(t, script)
	body := anthropicBody("run it", false)
	body["messages"] = append(body["messages"].([]any),
		obj{"role": "assistant", "content": []any{obj{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": obj{"command": "echo hi"}}}},
		obj{"role": "user", "content": []any{
			obj{"type": "tool_result", "tool_use_id": "toolu_1", "content": []any{obj{"type": "text", "text": "hi"}}},
			obj{"type": "text", "text": "<system-reminder>todo list is empty</system-reminder>"},
		}},
	)
	_, raw := post(t, url+"/v1/messages", body)
	is.Equal(path(decode(t, raw), "content", 0, "text"), "done: hi") // the tool result ends the turn
	is.Equal(fm.Requests()[0].LastUserMessage, "hi")                 // the tool result is what rules see
}
