package fakemodel_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/aod/aod/fakemodel"
)

func TestResponsesStreamText(t *testing.T) {
	for _, p := range []string{"/v1/responses", "/responses"} {
		t.Run(p, func(t *testing.T) {
			is := is.New(t)
			fm, url := start(t, nil)
			resp, raw := post(t, url+p, responsesBody("hello codex", true), "Authorization", "Bearer fake")
			is.Equal(resp.StatusCode, http.StatusOK)                       // streamed
			is.Equal(resp.Header.Get("Content-Type"), "text/event-stream") // as SSE
			is.Equal(fm.Requests()[0].API, fakemodel.APIOpenAIResponses)   // routed to responses
			is.Equal(fm.Requests()[0].LastUserMessage, "hello codex")      // environment context skipped

			events := parseSSE(t, raw)
			// "fake reply to: hello codex" is 26 runes: two deltas.
			want := seq("response.created", "response.in_progress",
				"response.output_item.added", "response.content_part.added",
				repeat(2, "response.output_text.delta"), "response.output_text.done",
				"response.content_part.done", "response.output_item.done", "response.completed")
			is.Equal(names(events), want)     // the exact event sequence
			is.Equal(dataTypes(events), want) // every data JSON carries its type
			for i, e := range events {
				is.Equal(e.Data["sequence_number"], float64(i)) // numbered in order
			}

			created := events[0].Data["response"].(map[string]any)
			is.True(strings.HasPrefix(created["id"].(string), "resp_"))     // lifecycle events nest the response
			is.Equal(created["status"], "in_progress")                      // in progress
			is.Equal(created["model"], "gpt-4.1")                           // the request's model
			is.Equal(created["output"], []any{})                            // nothing yet
			is.Equal(path(events[1].Data, "response", "id"), created["id"]) // in_progress: same response

			item := events[2].Data["item"].(map[string]any)
			is.Equal(item["type"], "message")             // a message item
			is.Equal(item["role"], "assistant")           // from the assistant
			is.Equal(item["status"], "in_progress")       // in progress
			is.Equal(item["content"], []any{})            // empty so far
			is.Equal(events[2].Data["output_index"], 0.0) // first output

			part := map[string]any{"type": "output_text", "text": "", "annotations": []any{}}
			is.Equal(events[3].Data["part"], part)          // an empty output_text part
			is.Equal(events[3].Data["item_id"], item["id"]) // of that item
			is.Equal(events[3].Data["content_index"], 0.0)  // first part

			text := events[4].Data["delta"].(string) + events[5].Data["delta"].(string)
			is.Equal(text, "fake reply to: hello codex")    // deltas spell the default reply
			is.Equal(events[4].Data["item_id"], item["id"]) // deltas name the item
			is.Equal(events[6].Data["text"], text)          // output_text.done has the whole text
			part["text"] = text
			is.Equal(events[7].Data["part"], part) // content_part.done has the whole part

			done := events[8].Data["item"].(map[string]any)
			is.Equal(done["id"], item["id"])                                                                              // the same item
			is.Equal(done["status"], "completed")                                                                         // completed
			is.Equal(done["content"], []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}) // with the text

			completed := events[9].Data["response"].(map[string]any)
			is.Equal(completed["id"], created["id"])   // same response
			is.Equal(completed["status"], "completed") // completed
			is.Equal(completed["output"], []any{done}) // with the output
			usage := completed["usage"].(map[string]any)
			in, out := usage["input_tokens"].(float64), usage["output_tokens"].(float64)
			is.True(in > 0 && out > 0)                                                        // token counts
			is.Equal(usage["total_tokens"], in+out)                                           // add up
			is.Equal(usage["input_tokens_details"], map[string]any{"cached_tokens": 0.0})     // cached tokens
			is.Equal(usage["output_tokens_details"], map[string]any{"reasoning_tokens": 0.0}) // reasoning tokens
		})
	}
}

func TestResponsesStreamToolCall(t *testing.T) {
	is := is.New(t)
	input := `{"command":["bash","-lc","echo hi && ls"],"workdir":"/workspace"}`
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "list", API: fakemodel.APIOpenAIResponses},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "shell", Input: json.RawMessage(input)}},
	}}}
	_, url := start(t, script)
	_, raw := post(t, url+"/v1/responses", responsesBody("list files", true))
	events := parseSSE(t, raw)

	n := len(events) - 6
	is.True(n >= 3) // arguments arrive in several deltas
	want := seq("response.created", "response.in_progress", "response.output_item.added",
		repeat(n, "response.function_call_arguments.delta"), "response.function_call_arguments.done",
		"response.output_item.done", "response.completed")
	is.Equal(names(events), want)     // the exact event sequence
	is.Equal(dataTypes(events), want) // every data JSON carries its type

	added := events[2].Data["item"].(map[string]any)
	is.Equal(added["type"], "function_call")                       // a function_call item
	is.True(strings.HasPrefix(added["id"].(string), "fc_"))        // with an item id
	is.True(strings.HasPrefix(added["call_id"].(string), "call_")) // and a call id
	is.Equal(added["name"], "shell")                               // the scripted tool
	is.Equal(added["arguments"], "")                               // arguments stream separately

	var args strings.Builder
	for _, e := range events[3 : 3+n] {
		is.Equal(e.Data["item_id"], added["id"]) // deltas name the item
		args.WriteString(e.Data["delta"].(string))
	}
	is.Equal(args.String(), input)                 // deltas reassemble to the input
	is.Equal(events[3+n].Data["arguments"], input) // arguments.done has them whole
	done := events[4+n].Data["item"].(map[string]any)
	is.Equal(done["call_id"], added["call_id"])                         // the same call
	is.Equal(done["arguments"], input)                                  // with its arguments
	is.Equal(path(events[5+n].Data, "response", "output"), []any{done}) // completed lists the call
}

func TestResponsesNonStreamAndFollowUp(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "run it"},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "shell", Input: json.RawMessage(`{"command":["echo","hi"]}`)}},
	}}}
	fm, url := start(t, script)

	resp, raw := post(t, url+"/v1/responses", responsesBody("run it", false))
	is.Equal(resp.StatusCode, http.StatusOK) // answered
	m := decode(t, raw)
	is.Equal(m["object"], "response")                                        // a response object
	is.Equal(m["status"], "completed")                                       // completed
	is.Equal(path(m, "output", 0, "type"), "function_call")                  // the tool call
	is.Equal(path(m, "output", 0, "arguments"), `{"command":["echo","hi"]}`) // with its arguments

	body := responsesBody("run it", false)
	body["input"] = append(body["input"].([]any),
		obj{"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": `{}`},
		obj{"type": "function_call_output", "call_id": "call_1", "output": "hi\n"},
	)
	_, raw = post(t, url+"/v1/responses", body)
	is.Equal(path(decode(t, raw), "output", 0, "content", 0, "text"), "done: hi\n") // the tool output ends the turn
	is.Equal(fm.Requests()[1].LastUserMessage, "hi\n")                              // not the prompt again
}

func TestChatStream(t *testing.T) {
	is := is.New(t)
	input := `{"command":"echo hi","description":"say hi"}`
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "use bash", API: fakemodel.APIOpenAIChat},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "bash", Input: json.RawMessage(input)}},
	}}}
	fm, url := start(t, script)

	resp, raw := post(t, url+"/chat/completions", chatBody("hi opencode", true))
	is.Equal(resp.StatusCode, http.StatusOK)                       // streamed
	is.Equal(resp.Header.Get("Content-Type"), "text/event-stream") // as SSE
	is.Equal(fm.Requests()[0].API, fakemodel.APIOpenAIChat)        // routed to chat
	events := parseSSE(t, raw)
	is.Equal(len(events), 5) // role, two deltas, finish, [DONE]
	for _, e := range events {
		is.Equal(e.Name, "") // data-only lines
	}
	is.Equal(path(events[0].Data, "object"), "chat.completion.chunk")          // chunks
	is.Equal(path(events[0].Data, "model"), "gpt-4.1")                         // the request's model
	is.Equal(path(events[0].Data, "choices", 0, "delta", "role"), "assistant") // the role first
	text := path(events[1].Data, "choices", 0, "delta", "content").(string) + path(events[2].Data, "choices", 0, "delta", "content").(string)
	is.Equal(text, "fake reply to: hi opencode")                          // deltas spell the default reply
	is.Equal(path(events[3].Data, "choices", 0, "finish_reason"), "stop") // then a finish
	_, ok := path(events[3].Data, "usage", "total_tokens").(float64)
	is.True(ok)                        // with usage
	is.Equal(events[4].Text, "[DONE]") // and [DONE]

	_, raw = post(t, url+"/v1/chat/completions", chatBody("use bash please", true))
	events = parseSSE(t, raw)
	call := path(events[1].Data, "choices", 0, "delta", "tool_calls", 0).(map[string]any)
	is.Equal(call["index"], 0.0)                             // first tool call
	is.True(strings.HasPrefix(call["id"].(string), "call_")) // with an id
	is.Equal(call["type"], "function")                       // a function
	is.Equal(path(call, "function", "name"), "bash")         // the scripted tool
	var args strings.Builder
	last := len(events) - 2
	for _, e := range events[2:last] {
		args.WriteString(path(e.Data, "choices", 0, "delta", "tool_calls", 0, "function", "arguments").(string))
	}
	is.Equal(args.String(), input)                                                 // arguments reassemble
	is.Equal(path(events[last].Data, "choices", 0, "finish_reason"), "tool_calls") // finish for the tool
	is.Equal(events[last+1].Text, "[DONE]")                                        // then [DONE]
}

func TestChatNonStreamAndFollowUp(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "use bash"},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "bash", Input: json.RawMessage(`{"command":"ls"}`)}},
	}}}
	_, url := start(t, script)

	_, raw := post(t, url+"/v1/chat/completions", chatBody("use bash", false))
	m := decode(t, raw)
	is.Equal(m["object"], "chat.completion")                                                                 // a completion
	is.Equal(path(m, "choices", 0, "finish_reason"), "tool_calls")                                           // for a tool
	is.Equal(path(m, "choices", 0, "message", "content"), nil)                                               // no text
	is.Equal(path(m, "choices", 0, "message", "tool_calls", 0, "function", "arguments"), `{"command":"ls"}`) // the call

	body := chatBody("use bash", false)
	body["messages"] = append(body["messages"].([]any),
		obj{"role": "assistant", "content": nil, "tool_calls": []any{obj{"id": "call_1", "type": "function", "function": obj{"name": "bash", "arguments": "{}"}}}},
		obj{"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
	)
	_, raw = post(t, url+"/v1/chat/completions", body)
	m = decode(t, raw)
	is.Equal(path(m, "choices", 0, "message", "content"), "done: a.txt\nb.txt") // the tool output ends the turn
	is.Equal(path(m, "choices", 0, "finish_reason"), "stop")                    // with stop
}

func TestModels(t *testing.T) {
	is := is.New(t)
	fm, url := start(t, nil)
	post(t, url+"/v1/responses", obj{"model": "my-custom-model", "input": "hi"})

	resp, raw := get(t, url+"/v1/models")
	is.Equal(resp.StatusCode, http.StatusOK) // listed
	m := decode(t, raw)
	is.Equal(m["object"], "list") // a list
	var ids []string
	for _, d := range m["data"].([]any) {
		ids = append(ids, d.(map[string]any)["id"].(string))
	}
	is.True(contains(ids, "my-custom-model"))               // a requested model is listed
	is.True(contains(ids, "claude-sonnet-4-6"))             // and the usual ones
	is.Equal(fm.Requests()[1].API, fakemodel.APIOpenAIChat) // recorded as the OpenAI family

	get(t, url+"/v1/models", "anthropic-version", "2023-06-01")
	is.Equal(fm.Requests()[2].API, fakemodel.APIAnthropic) // Anthropic's listing is recorded as anthropic

	resp, raw = get(t, url+"/v1beta/models")
	is.Equal(resp.StatusCode, http.StatusOK)                                       // Gemini's listing
	is.Equal(path(decode(t, raw), "models", 0, "name"), "models/claude-haiku-4-5") // names are models/<id>
	is.Equal(fm.Requests()[3].API, fakemodel.APIGemini)                            // recorded as gemini
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestOpenAIError(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Reply: fakemodel.Reply{Error: &fakemodel.ErrorReply{Status: 429, Message: "slow down: {{last_user_message}}"}},
	}}}
	_, url := start(t, script)
	resp, raw := post(t, url+"/v1/responses", responsesBody("x", true))
	is.Equal(resp.StatusCode, 429)                                         // the scripted status
	is.Equal(path(decode(t, raw), "error", "message"), "slow down: x")     // OpenAI's error shape, placeholder filled
	is.Equal(path(decode(t, raw), "error", "type"), "rate_limit_exceeded") // type follows the status
	resp, _ = post(t, url+"/v1/chat/completions", chatBody("x", true))
	is.Equal(resp.StatusCode, 429) // chat errors too
}
