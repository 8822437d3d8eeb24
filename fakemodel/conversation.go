package fakemodel

import (
	"encoding/json"
	"strings"
)

// conversation is what the fake needs to know about a request, whatever API
// it came through.
type conversation struct {
	model  string
	stream bool

	// lastUser is the text rules match against: the last user text that is
	// not CLI context noise, or — when the request hands back tool results
	// without new user text — the tool results.
	lastUser string
	// afterTool is set when the conversation ends in tool results: the
	// model's previous answer was a tool call.
	afterTool  bool
	toolResult string

	system   string          // system prompt / instructions, all parts joined
	hasTools bool            // the request offers tools: a main agent-loop call
	schema   json.RawMessage // JSON schema the reply must follow, if any
}

// entry is one message of a conversation, reduced to its texts.
type entry struct {
	role        string   // "user", "assistant" or "tool"
	texts       []string // text parts, in order
	toolResults []string // tool results handed back in this message
}

// summarize fills lastUser, afterTool and toolResult from the messages.
//
// It walks back from the end: assistant messages at the tail (a prefill) are
// skipped; a message carrying tool results ends the walk (a tool follow-up
// must never match the prompt that caused the tool call again); user
// messages holding only CLI context (system reminders, environment blocks)
// are skipped in favour of the user message before them.
func (c *conversation) summarize(entries []entry) {
	fallback := ""
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.role == "assistant" {
			if fallback != "" {
				break // don't reach into an earlier turn
			}
			continue
		}
		text, noise := pickText(e.texts)
		if len(e.toolResults) > 0 {
			c.afterTool = true
			c.toolResult = strings.Join(e.toolResults, "\n")
			if text != "" {
				c.lastUser = text
			} else {
				c.lastUser = c.toolResult
			}
			return
		}
		if text != "" {
			c.lastUser = text
			return
		}
		if fallback == "" {
			fallback = noise
		}
	}
	c.lastUser = fallback
}

// pickText returns the last text part that is not CLI context, with
// <system-reminder> blocks removed, and the last non-empty part of any kind
// as a fallback.
func pickText(parts []string) (text, fallback string) {
	for i := len(parts) - 1; i >= 0; i-- {
		p := strings.TrimSpace(stripReminders(parts[i]))
		if p == "" {
			continue
		}
		if fallback == "" {
			fallback = p
		}
		if !isContextBlock(p) {
			return p, fallback
		}
	}
	return "", fallback
}

// stripReminders removes Claude Code's <system-reminder>…</system-reminder>
// blocks, which it attaches to user messages.
func stripReminders(s string) string {
	const open, close = "<system-reminder>", "</system-reminder>"
	for {
		i := strings.Index(s, open)
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], close)
		if j < 0 {
			return s[:i]
		}
		s = s[:i] + s[i+j+len(close):]
	}
}

// isContextBlock reports whether s is wholly one XML-like block such as
// Codex's <environment_context>…</environment_context>, or an AGENTS.md
// preamble: context a CLI sends as a user message, not the user's words.
func isContextBlock(s string) bool {
	if strings.HasPrefix(s, "# AGENTS.md instructions") {
		return true
	}
	if !strings.HasPrefix(s, "<") {
		return false
	}
	end := strings.IndexByte(s, '>')
	if end < 2 {
		return false
	}
	tag := s[1:end]
	for _, r := range tag {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return strings.HasSuffix(s, "</"+tag+">")
}

// utility reports whether a request is a background call of a CLI (a title,
// a summary, a quota probe, a structured side question) rather than a turn of
// the agent loop. Those never consume script rules. Requests that offer
// tools are agent-loop calls even on a haiku model, so an agent configured
// with a haiku model can still be scripted.
func (c *conversation) utility() bool {
	if c.hasTools {
		return false
	}
	if strings.Contains(strings.ToLower(c.model), "haiku") || len(c.schema) > 0 {
		return true
	}
	sys := strings.ToLower(c.system)
	return strings.Contains(sys, "title") || strings.Contains(sys, "summar")
}

// textOf returns the text of a content value that is either a string or a
// list of parts with "text" fields (joined by newlines); other JSON is
// returned as it is.
func textOf(raw json.RawMessage) string {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		var texts []string
		for _, p := range parts {
			if p.Text != nil {
				texts = append(texts, *p.Text)
			}
		}
		return strings.Join(texts, "\n")
	}
	return string(raw)
}

// isJSONList reports whether raw is a JSON array (after leading space).
func isJSONList(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return strings.HasPrefix(s, "[")
}

// --- per-API extraction ---

type anthropicRequest struct {
	Model    string          `json:"model"`
	Stream   bool            `json:"stream"`
	System   json.RawMessage `json:"system"`
	Tools    []any           `json:"tools"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

type anthropicBlock struct {
	Type    string          `json:"type"`
	Text    string          `json:"text"`
	Content json.RawMessage `json:"content"` // tool_result
}

func parseAnthropic(body []byte) (*conversation, error) {
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	c := &conversation{model: req.Model, stream: req.Stream, system: textOf(req.System), hasTools: len(req.Tools) > 0}
	var entries []entry
	for _, m := range req.Messages {
		e := entry{role: m.Role}
		if m.Role != "user" {
			e.role = "assistant"
		}
		if isJSONList(m.Content) {
			var blocks []anthropicBlock
			if err := json.Unmarshal(m.Content, &blocks); err != nil {
				return nil, err
			}
			for _, b := range blocks {
				switch b.Type {
				case "text":
					e.texts = append(e.texts, b.Text)
				case "tool_result":
					e.toolResults = append(e.toolResults, textOf(b.Content))
				}
			}
		} else {
			e.texts = []string{textOf(m.Content)}
		}
		entries = append(entries, e)
	}
	c.summarize(entries)
	return c, nil
}

type responsesRequest struct {
	Model        string          `json:"model"`
	Stream       bool            `json:"stream"`
	Instructions string          `json:"instructions"`
	Tools        []any           `json:"tools"`
	Input        json.RawMessage `json:"input"`
	Text         struct {
		Format struct {
			Type   string          `json:"type"`
			Schema json.RawMessage `json:"schema"`
		} `json:"format"`
	} `json:"text"`
}

type responsesItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Output  json.RawMessage `json:"output"`
}

func parseResponses(body []byte) (*conversation, error) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	c := &conversation{model: req.Model, stream: req.Stream, hasTools: len(req.Tools) > 0}
	if req.Text.Format.Type == "json_schema" {
		c.schema = req.Text.Format.Schema
	}
	system := []string{req.Instructions}
	var entries []entry
	if isJSONList(req.Input) {
		var items []responsesItem
		if err := json.Unmarshal(req.Input, &items); err != nil {
			return nil, err
		}
		for _, it := range items {
			switch {
			case strings.HasSuffix(it.Type, "_call_output"):
				// Consecutive outputs answer one turn's parallel calls.
				out := textOf(it.Output)
				if n := len(entries); n > 0 && entries[n-1].role == "tool" {
					entries[n-1].toolResults = append(entries[n-1].toolResults, out)
				} else {
					entries = append(entries, entry{role: "tool", toolResults: []string{out}})
				}
			case it.Type == "message" || it.Type == "":
				switch it.Role {
				case "user":
					entries = append(entries, entry{role: "user", texts: []string{textOf(it.Content)}})
				case "system", "developer":
					system = append(system, textOf(it.Content))
				default:
					entries = append(entries, entry{role: "assistant"})
				}
			default: // function_call, reasoning, …: the model's side
				entries = append(entries, entry{role: "assistant"})
			}
		}
	} else {
		entries = []entry{{role: "user", texts: []string{textOf(req.Input)}}}
	}
	c.system = strings.Join(system, "\n")
	c.summarize(entries)
	return c, nil
}

type chatRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Tools    []any  `json:"tools"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	ResponseFormat struct {
		Type       string `json:"type"`
		JSONSchema struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

func parseChat(body []byte) (*conversation, error) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	c := &conversation{model: req.Model, stream: req.Stream, hasTools: len(req.Tools) > 0}
	if req.ResponseFormat.Type == "json_schema" {
		c.schema = req.ResponseFormat.JSONSchema.Schema
	}
	var system []string
	var entries []entry
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			system = append(system, textOf(m.Content))
		case "user":
			entries = append(entries, entry{role: "user", texts: []string{textOf(m.Content)}})
		case "tool":
			out := textOf(m.Content)
			if n := len(entries); n > 0 && entries[n-1].role == "tool" {
				entries[n-1].toolResults = append(entries[n-1].toolResults, out)
			} else {
				entries = append(entries, entry{role: "tool", toolResults: []string{out}})
			}
		default:
			entries = append(entries, entry{role: "assistant"})
		}
	}
	c.system = strings.Join(system, "\n")
	c.summarize(entries)
	return c, nil
}

type geminiPart struct {
	Text             *string `json:"text"`
	Thought          bool    `json:"thought"`
	FunctionResponse *struct {
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	} `json:"functionResponse"`
}

type geminiContent struct {
	Role  string       `json:"role"`
	Parts []geminiPart `json:"parts"`
}

type geminiRequest struct {
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction"`
	Tools             []any           `json:"tools"`
	GenerationConfig  struct {
		ResponseMIMEType   string          `json:"responseMimeType"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
	} `json:"generationConfig"`
}

func parseGemini(body []byte, model string, stream bool) (*conversation, error) {
	var req geminiRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	c := &conversation{model: model, stream: stream, hasTools: len(req.Tools) > 0}
	if gc := req.GenerationConfig; strings.Contains(gc.ResponseMIMEType, "json") {
		c.schema = gc.ResponseJSONSchema
		if len(c.schema) == 0 {
			c.schema = gc.ResponseSchema
		}
		if len(c.schema) == 0 {
			c.schema = json.RawMessage(`{}`)
		}
	}
	if si := req.SystemInstruction; si != nil {
		var sys []string
		for _, p := range si.Parts {
			if p.Text != nil {
				sys = append(sys, *p.Text)
			}
		}
		c.system = strings.Join(sys, "\n")
	}
	var entries []entry
	for _, m := range req.Contents {
		e := entry{role: "user"}
		if m.Role == "model" {
			e.role = "assistant"
		}
		for _, p := range m.Parts {
			switch {
			case p.FunctionResponse != nil:
				e.toolResults = append(e.toolResults, geminiResult(p.FunctionResponse.Response))
			case p.Text != nil && !p.Thought:
				e.texts = append(e.texts, *p.Text)
			}
		}
		entries = append(entries, e)
	}
	c.summarize(entries)
	return c, nil
}

// geminiResult is a functionResponse's text: Gemini CLI wraps tool output as
// {"output": "…"} (or {"error": "…"}); anything else is returned as JSON.
func geminiResult(raw json.RawMessage) string {
	var r map[string]json.RawMessage
	if json.Unmarshal(raw, &r) == nil {
		for _, k := range []string{"output", "error", "content", "result"} {
			if v, ok := r[k]; ok {
				return textOf(v)
			}
		}
	}
	return string(raw)
}
