package fakemodel

import (
	"encoding/json"
	"net/http"
)

// textChunk and jsonChunk are the sizes (in runes) of streamed deltas.
const (
	textChunk = 16
	jsonChunk = 12
)

// anthropicMessages serves POST /v1/messages (Claude Code adds ?beta=true).
func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request, body []byte) {
	c, err := parseAnthropic(body)
	if err != nil {
		s.record(r, body, APIAnthropic, nil)
		anthropicError(w, &ErrorReply{Status: http.StatusBadRequest, Message: "fake model API: bad request body: " + err.Error()})
		return
	}
	s.record(r, body, APIAnthropic, c)
	a := s.decide(APIAnthropic, c)
	if a.err != nil {
		anthropicError(w, a.err)
		return
	}

	id := s.nextID("msg")
	var toolID string
	if a.tool != nil {
		toolID = s.nextID("toolu")
	}
	stop := "end_turn"
	if a.tool != nil {
		stop = "tool_use"
	}
	in, out := tokens(len(body)), tokens(len(a.text))
	if a.tool != nil {
		out += tokens(len(a.tool.input))
	}

	if !c.stream {
		var content []any
		if a.text != "" || a.tool == nil {
			content = append(content, obj{"type": "text", "text": a.text})
		}
		if a.tool != nil {
			content = append(content, obj{"type": "tool_use", "id": toolID, "name": a.tool.name, "input": json.RawMessage(a.tool.input)})
		}
		writeJSON(w, http.StatusOK, obj{
			"id": id, "type": "message", "role": "assistant", "model": c.model,
			"content": content, "stop_reason": stop, "stop_sequence": nil,
			"usage": anthropicUsage(in, out),
		})
		return
	}

	sw := newSSE(w)
	sw.event("message_start", obj{"type": "message_start", "message": obj{
		"id": id, "type": "message", "role": "assistant", "model": c.model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": anthropicUsage(in, 1),
	}})
	index := 0
	if a.text != "" || a.tool == nil {
		sw.event("content_block_start", obj{"type": "content_block_start", "index": index,
			"content_block": obj{"type": "text", "text": ""}})
		for _, part := range chunks(a.text, textChunk) {
			sw.event("content_block_delta", obj{"type": "content_block_delta", "index": index,
				"delta": obj{"type": "text_delta", "text": part}})
		}
		sw.event("content_block_stop", obj{"type": "content_block_stop", "index": index})
		index++
	}
	if a.tool != nil {
		sw.event("content_block_start", obj{"type": "content_block_start", "index": index,
			"content_block": obj{"type": "tool_use", "id": toolID, "name": a.tool.name, "input": obj{}}})
		for _, part := range chunks(a.tool.input, jsonChunk) {
			sw.event("content_block_delta", obj{"type": "content_block_delta", "index": index,
				"delta": obj{"type": "input_json_delta", "partial_json": part}})
		}
		sw.event("content_block_stop", obj{"type": "content_block_stop", "index": index})
	}
	sw.event("message_delta", obj{"type": "message_delta",
		"delta": obj{"stop_reason": stop, "stop_sequence": nil},
		"usage": obj{"output_tokens": out}})
	sw.event("message_stop", obj{"type": "message_stop"})
}

func anthropicUsage(in, out int) obj {
	return obj{"input_tokens": in, "output_tokens": out,
		"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
}

// anthropicCountTokens serves POST /v1/messages/count_tokens.
func (s *Server) anthropicCountTokens(w http.ResponseWriter, r *http.Request, body []byte) {
	c, _ := parseAnthropic(body) // a count needs no valid body
	s.record(r, body, APIAnthropic, c)
	writeJSON(w, http.StatusOK, obj{"input_tokens": tokens(len(body))})
}

// anthropicError answers with the Anthropic error shape; the type follows
// the status the way the real API maps them unless the script names one.
func anthropicError(w http.ResponseWriter, e *ErrorReply) {
	typ := e.Type
	if typ == "" {
		switch e.Status {
		case 400:
			typ = "invalid_request_error"
		case 401:
			typ = "authentication_error"
		case 403:
			typ = "permission_error"
		case 404:
			typ = "not_found_error"
		case 413:
			typ = "request_too_large"
		case 429:
			typ = "rate_limit_error"
		case 529:
			typ = "overloaded_error"
		default:
			typ = "api_error"
		}
	}
	writeJSON(w, e.Status, obj{"type": "error", "error": obj{"type": typ, "message": e.Message}})
}
