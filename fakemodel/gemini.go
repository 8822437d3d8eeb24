package fakemodel

import (
	"encoding/json"
	"net/http"
	"strings"
)

// geminiRoute is a parsed /v1beta/models/{model}:{method} path.
type geminiRoute struct {
	model, method string
}

// geminiPath parses a Gemini model-method path, or returns nil.
func geminiPath(path string) *geminiRoute {
	for _, prefix := range []string{"/v1beta/models/", "/v1/models/", "/v1alpha/models/"} {
		rest, ok := strings.CutPrefix(path, prefix)
		if !ok {
			continue
		}
		model, method, ok := strings.Cut(rest, ":")
		if !ok || model == "" || strings.Contains(model, "/") {
			return nil
		}
		switch method {
		case "generateContent", "streamGenerateContent", "countTokens":
			return &geminiRoute{model: model, method: method}
		}
		return nil
	}
	return nil
}

// gemini serves the Gemini API's generateContent, streamGenerateContent
// (SSE with ?alt=sse, else one JSON array) and countTokens. The key may come
// as x-goog-api-key or ?key=; any key is accepted.
func (s *Server) gemini(w http.ResponseWriter, r *http.Request, body []byte, route *geminiRoute) {
	stream := route.method == "streamGenerateContent"
	c, err := parseGemini(body, route.model, stream)
	if err != nil {
		s.record(r, body, APIGemini, nil)
		geminiError(w, &ErrorReply{Status: http.StatusBadRequest, Message: "fake model API: bad request body: " + err.Error()})
		return
	}
	s.record(r, body, APIGemini, c)
	if route.method == "countTokens" {
		writeJSON(w, http.StatusOK, obj{"totalTokens": tokens(len(body))})
		return
	}
	a := s.decide(APIGemini, c)
	if a.err != nil {
		geminiError(w, a.err)
		return
	}

	respID := s.nextID("resp")
	in, out := tokens(len(body)), tokens(len(a.text))
	if a.tool != nil {
		out += tokens(len(a.tool.input))
	}
	// Gemini sends a function call whole, in one part; text may stream.
	var pieces [][]any
	for _, t := range chunks(a.text, textChunk) {
		pieces = append(pieces, []any{obj{"text": t}})
	}
	if a.tool != nil {
		pieces = append(pieces, []any{obj{"functionCall": obj{"name": a.tool.name, "args": json.RawMessage(a.tool.input)}}})
	}
	if len(pieces) == 0 {
		pieces = [][]any{{obj{"text": ""}}}
	}
	// The last chunk carries finishReason and the usage, as Gemini's do;
	// Gemini CLI treats a stream without a finishReason as broken.
	chunk := func(parts []any, last bool) obj {
		cand := obj{"content": obj{"role": "model", "parts": parts}, "index": 0}
		usage := obj{"promptTokenCount": in, "candidatesTokenCount": 0, "totalTokenCount": in}
		if last {
			cand["finishReason"] = "STOP"
			usage = obj{"promptTokenCount": in, "candidatesTokenCount": out, "totalTokenCount": in + out}
		}
		return obj{"candidates": []any{cand}, "usageMetadata": usage, "modelVersion": c.model, "responseId": respID}
	}

	if !stream {
		var parts []any
		if a.text != "" || a.tool == nil {
			parts = append(parts, obj{"text": a.text})
		}
		if a.tool != nil {
			parts = append(parts, pieces[len(pieces)-1]...)
		}
		writeJSON(w, http.StatusOK, chunk(parts, true))
		return
	}
	if r.URL.Query().Get("alt") != "sse" {
		all := make([]any, len(pieces))
		for i, p := range pieces {
			all[i] = chunk(p, i == len(pieces)-1)
		}
		writeJSON(w, http.StatusOK, all)
		return
	}
	sw := newSSE(w)
	for i, p := range pieces {
		sw.event("", chunk(p, i == len(pieces)-1))
	}
}

// geminiListModels serves GET /v1beta/models.
func (s *Server) geminiListModels(w http.ResponseWriter, r *http.Request, body []byte) {
	s.record(r, body, APIGemini, nil)
	var models []any
	for _, m := range s.knownModels() {
		models = append(models, obj{"name": "models/" + m, "displayName": m,
			"supportedGenerationMethods": []string{"generateContent", "streamGenerateContent", "countTokens"}})
	}
	writeJSON(w, http.StatusOK, obj{"models": models})
}

// geminiError answers with the Google API error shape.
func geminiError(w http.ResponseWriter, e *ErrorReply) {
	status := e.Type
	if status == "" {
		switch {
		case e.Status == 400:
			status = "INVALID_ARGUMENT"
		case e.Status == 401:
			status = "UNAUTHENTICATED"
		case e.Status == 403:
			status = "PERMISSION_DENIED"
		case e.Status == 404:
			status = "NOT_FOUND"
		case e.Status == 429:
			status = "RESOURCE_EXHAUSTED"
		case e.Status == 503 || e.Status == 529:
			status = "UNAVAILABLE"
		default:
			status = "INTERNAL"
		}
	}
	writeJSON(w, e.Status, obj{"error": obj{"code": e.Status, "message": e.Message, "status": status}})
}
