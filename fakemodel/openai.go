package fakemodel

import (
	"net/http"
	"sort"
	"strings"
)

// openaiResponses serves POST /v1/responses (Codex; opencode's openai
// provider). Codex needs every data JSON to carry "type" and the lifecycle
// events to nest the response object under "response", or it reports
// "stream closed before response.completed".
func (s *Server) openaiResponses(w http.ResponseWriter, r *http.Request, body []byte) {
	c, err := parseResponses(body)
	if err != nil {
		s.record(r, body, APIOpenAIResponses, nil)
		openaiError(w, &ErrorReply{Status: http.StatusBadRequest, Message: "fake model API: bad request body: " + err.Error()})
		return
	}
	s.record(r, body, APIOpenAIResponses, c)
	a := s.decide(APIOpenAIResponses, c)
	if a.err != nil {
		openaiError(w, a.err)
		return
	}

	respID := s.nextID("resp")
	created := s.now().Unix()
	var msgID, fcID, callID string
	if a.text != "" || a.tool == nil {
		msgID = s.nextID("msg")
	}
	if a.tool != nil {
		fcID, callID = s.nextID("fc"), s.nextID("call")
	}
	in, out := tokens(len(body)), tokens(len(a.text))
	if a.tool != nil {
		out += tokens(len(a.tool.input))
	}
	response := func(status string, output []any, usage any) obj {
		return obj{
			"id": respID, "object": "response", "created_at": created, "status": status,
			"model": c.model, "output": output, "usage": usage,
			"error": nil, "incomplete_details": nil,
			"parallel_tool_calls": true, "tool_choice": "auto", "tools": []any{},
		}
	}
	textPart := func(text string) obj {
		return obj{"type": "output_text", "text": text, "annotations": []any{}}
	}
	message := func(status string, content []any) obj {
		return obj{"type": "message", "id": msgID, "status": status, "role": "assistant", "content": content}
	}
	call := func(status, args string) obj {
		return obj{"type": "function_call", "id": fcID, "call_id": callID, "name": a.tool.name,
			"arguments": args, "status": status}
	}
	var output []any
	if msgID != "" {
		output = append(output, message("completed", []any{textPart(a.text)}))
	}
	if a.tool != nil {
		output = append(output, call("completed", a.tool.input))
	}
	usage := obj{
		"input_tokens": in, "input_tokens_details": obj{"cached_tokens": 0},
		"output_tokens": out, "output_tokens_details": obj{"reasoning_tokens": 0},
		"total_tokens": in + out,
	}

	if !c.stream {
		writeJSON(w, http.StatusOK, response("completed", output, usage))
		return
	}

	sw := newSSE(w)
	seq := 0
	emit := func(typ string, fields obj) {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		sw.event(typ, fields)
	}
	emit("response.created", obj{"response": response("in_progress", []any{}, nil)})
	emit("response.in_progress", obj{"response": response("in_progress", []any{}, nil)})
	index := 0
	if msgID != "" {
		emit("response.output_item.added", obj{"output_index": index, "item": message("in_progress", []any{})})
		loc := func(fields obj) obj {
			fields["item_id"], fields["output_index"], fields["content_index"] = msgID, index, 0
			return fields
		}
		emit("response.content_part.added", loc(obj{"part": textPart("")}))
		for _, part := range chunks(a.text, textChunk) {
			emit("response.output_text.delta", loc(obj{"delta": part}))
		}
		emit("response.output_text.done", loc(obj{"text": a.text}))
		emit("response.content_part.done", loc(obj{"part": textPart(a.text)}))
		emit("response.output_item.done", obj{"output_index": index, "item": message("completed", []any{textPart(a.text)})})
		index++
	}
	if a.tool != nil {
		emit("response.output_item.added", obj{"output_index": index, "item": call("in_progress", "")})
		for _, part := range chunks(a.tool.input, jsonChunk) {
			emit("response.function_call_arguments.delta", obj{"item_id": fcID, "output_index": index, "delta": part})
		}
		emit("response.function_call_arguments.done", obj{"item_id": fcID, "output_index": index, "arguments": a.tool.input})
		emit("response.output_item.done", obj{"output_index": index, "item": call("completed", a.tool.input)})
	}
	emit("response.completed", obj{"response": response("completed", output, usage)})
}

// openaiChat serves POST /v1/chat/completions, for opencode's
// OpenAI-compatible providers.
func (s *Server) openaiChat(w http.ResponseWriter, r *http.Request, body []byte) {
	c, err := parseChat(body)
	if err != nil {
		s.record(r, body, APIOpenAIChat, nil)
		openaiError(w, &ErrorReply{Status: http.StatusBadRequest, Message: "fake model API: bad request body: " + err.Error()})
		return
	}
	s.record(r, body, APIOpenAIChat, c)
	a := s.decide(APIOpenAIChat, c)
	if a.err != nil {
		openaiError(w, a.err)
		return
	}

	id := s.nextID("chatcmpl")
	created := s.now().Unix()
	var callID string
	finish := "stop"
	if a.tool != nil {
		callID, finish = s.nextID("call"), "tool_calls"
	}
	in, out := tokens(len(body)), tokens(len(a.text))
	if a.tool != nil {
		out += tokens(len(a.tool.input))
	}
	usage := obj{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}

	if !c.stream {
		msg := obj{"role": "assistant", "content": a.text}
		if a.tool != nil {
			if a.text == "" {
				msg["content"] = nil
			}
			msg["tool_calls"] = []any{obj{"id": callID, "type": "function",
				"function": obj{"name": a.tool.name, "arguments": a.tool.input}}}
		}
		writeJSON(w, http.StatusOK, obj{
			"id": id, "object": "chat.completion", "created": created, "model": c.model,
			"choices": []any{obj{"index": 0, "message": msg, "finish_reason": finish, "logprobs": nil}},
			"usage":   usage,
		})
		return
	}

	sw := newSSE(w)
	chunk := func(delta obj, finish any, usage any) {
		ch := obj{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": c.model,
			"choices": []any{obj{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": nil}},
		}
		if usage != nil {
			ch["usage"] = usage
		}
		sw.event("", ch)
	}
	chunk(obj{"role": "assistant", "content": ""}, nil, nil)
	for _, part := range chunks(a.text, textChunk) {
		chunk(obj{"content": part}, nil, nil)
	}
	if a.tool != nil {
		chunk(obj{"tool_calls": []any{obj{"index": 0, "id": callID, "type": "function",
			"function": obj{"name": a.tool.name, "arguments": ""}}}}, nil, nil)
		for _, part := range chunks(a.tool.input, jsonChunk) {
			chunk(obj{"tool_calls": []any{obj{"index": 0, "function": obj{"arguments": part}}}}, nil, nil)
		}
	}
	chunk(obj{}, finish, usage)
	sw.event("", "[DONE]")
}

// defaultModels are listed by the models endpoints besides the models
// requests have asked for, so a CLI that checks its model exists finds the
// usual ones.
var defaultModels = []string{
	"claude-sonnet-4-6", "claude-opus-4-1", "claude-haiku-4-5",
	"gpt-4.1", "gpt-5", "fake-model",
	"gemini-2.5-pro", "gemini-2.5-flash",
}

// knownModels is defaultModels plus every model a request has named, sorted.
func (s *Server) knownModels() []string {
	seen := map[string]bool{}
	for _, m := range defaultModels {
		seen[m] = true
	}
	s.mu.Lock()
	for _, r := range s.requests {
		if r.Model != "" {
			seen[r.Model] = true
		}
	}
	s.mu.Unlock()
	models := make([]string, 0, len(seen))
	for m := range seen {
		models = append(models, m)
	}
	sort.Strings(models)
	return models
}

// listModels serves GET /v1/models. Anthropic and OpenAI share the path;
// the entries carry both APIs' fields. The request is recorded as anthropic
// when it sends anthropic-version, otherwise as the OpenAI family's
// (openai-chat).
func (s *Server) listModels(w http.ResponseWriter, r *http.Request, body []byte) {
	api := APIOpenAIChat
	if r.Header.Get("anthropic-version") != "" {
		api = APIAnthropic
	}
	s.record(r, body, api, nil)
	models := s.knownModels()
	data := make([]any, len(models))
	for i, m := range models {
		data[i] = obj{"id": m, "object": "model", "type": "model", "created": 0,
			"created_at": "2025-01-01T00:00:00Z", "owned_by": "fakemodel", "display_name": m}
	}
	writeJSON(w, http.StatusOK, obj{"object": "list", "data": data, "has_more": false,
		"first_id": models[0], "last_id": models[len(models)-1]})
}

// openaiError answers with the OpenAI error shape.
func openaiError(w http.ResponseWriter, e *ErrorReply) {
	typ := e.Type
	if typ == "" {
		switch {
		case e.Status == 429:
			typ = "rate_limit_exceeded"
		case e.Status == 401:
			typ = "invalid_api_key"
		case e.Status >= 500:
			typ = "server_error"
		default:
			typ = "invalid_request_error"
		}
	}
	writeJSON(w, e.Status, obj{"error": obj{"message": e.Message, "type": typ, "param": nil, "code": strings.ToLower(typ)}})
}
