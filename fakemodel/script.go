package fakemodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Script says what the fake answers. As a JSON file:
//
//	{
//	  "rules": [
//	    {"match": {"contains": "list the files"},
//	     "reply": {"tool_call": {"name": "Bash", "input": {"command": "ls"}}}},
//	    {"match": {"contains": "flaky", "api": "anthropic", "nth": 1},
//	     "reply": {"error": {"status": 529, "message": "overloaded"}}},
//	    {"match": {"contains": "hello"},
//	     "reply": {"text": "hi! you said: {{last_user_message}}"}}
//	  ],
//	  "default": {"text": "I am the fake model."}
//	}
//
// Keys starting with "//" are comments, allowed in any object.
//
// A request is answered by, in order:
//
//  1. Background calls of a CLI — a request without tools whose model name
//     contains "haiku", whose system prompt asks for a title or a summary,
//     or which asks for JSON following a schema — get the default text (or,
//     for a schema, a minimal JSON value that fits it) and never consume a
//     rule.
//  2. The first rule whose match fits: "contains" is a case-sensitive
//     substring of the request's last user message ("" or absent matches
//     any); "api" (optional) is one of "anthropic", "openai-responses",
//     "openai-chat", "gemini"; "nth" (optional, from 1) fires the rule only
//     on the nth request that fits its contains and api, counted since the
//     server started or was Reset, whether or not that request was
//     answered by an earlier rule.
//  3. A request handing back tool results (tool_result,
//     function_call_output, a "tool" message, functionResponse) gets the
//     text "done: <tool results, first 200 characters>", so a scripted tool
//     call ends the turn.
//  4. The script's "default" reply.
//  5. The text "fake reply to: <last user message, first 500 characters>".
//
// With a nil script only 5 applies.
//
// A reply is "text", "tool_call" (name, and input: a JSON object, {} when
// absent), both (the text streams first, then the call), or "error" (an
// HTTP status from 400 to 599, a message, and optionally the API's error
// type, e.g. "overloaded_error"; by default derived from the status).
// "{{last_user_message}}" in a text, an error message or any string inside
// a tool input is replaced by the request's last user message. The last user
// message is the last text of the last user message, skipping Claude Code's
// <system-reminder> blocks and context blocks such as Codex's
// <environment_context>; when a request hands back tool results and no new
// user text, it is the tool results.
type Script struct {
	Rules   []Rule `json:"rules"`
	Default *Reply `json:"default,omitempty"`
}

// Rule answers the requests its Match fits with its Reply.
type Rule struct {
	Match Match `json:"match"`
	Reply Reply `json:"reply"`
}

// Match selects requests; see Script.
type Match struct {
	Contains string `json:"contains,omitempty"`
	API      string `json:"api,omitempty"`
	Nth      int    `json:"nth,omitempty"`
}

// Reply is what the fake model answers. Error excludes the other two.
type Reply struct {
	Text     string      `json:"text,omitempty"`
	ToolCall *ToolCall   `json:"tool_call,omitempty"`
	Error    *ErrorReply `json:"error,omitempty"`
}

// ToolCall is a call of one of the tools the CLI offers.
type ToolCall struct {
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input,omitempty"` // a JSON object
}

// ErrorReply makes the fake answer with an HTTP error in the API's shape.
type ErrorReply struct {
	Status  int    `json:"status"`
	Message string `json:"message,omitempty"`
	Type    string `json:"type,omitempty"`
}

// ScriptError is a problem with a script file: where it is and what it is.
type ScriptError struct {
	File   string // "" when parsed from memory
	Line   int    // 1-based; 0 when the problem has no single position
	Column int
	Field  string // e.g. "rules[1].reply"
	Msg    string
}

func (e *ScriptError) Error() string {
	var b strings.Builder
	b.WriteString("fakemodel: script")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// LoadScript reads and checks a script file. Errors are *ScriptError, or
// wrap the file system's error.
func LoadScript(path string) (*Script, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fakemodel: load script: %w", err)
	}
	s, err := ParseScript(data)
	var se *ScriptError
	if errors.As(err, &se) {
		se.File = path
	}
	return s, err
}

// ParseScript parses and checks a script. Errors are *ScriptError.
func ParseScript(data []byte) (*Script, error) {
	// Syntax first, so positions are the file's.
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, jsonError(data, err)
	}
	if err := checkTree(tree); err != nil {
		return nil, err
	}
	var s Script
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, jsonError(data, err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// jsonError turns encoding/json's errors into a ScriptError with a line and
// column.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return &ScriptError{Line: line, Column: col, Msg: "invalid JSON: " + syn.Error()}
	case errors.As(err, &typ):
		line, col := position(data, typ.Offset)
		return &ScriptError{Line: line, Column: col, Field: typ.Field, Msg: fmt.Sprintf("want %s, got JSON %s", typ.Type, typ.Value)}
	}
	return &ScriptError{Msg: err.Error()}
}

// position converts a byte offset into a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

// checkTree rejects keys the format doesn't know, naming where they are:
// encoding/json would silently drop a misspelt "contians" and the rule would
// match everything.
func checkTree(tree any) error {
	top, ok := tree.(map[string]any)
	if !ok {
		return &ScriptError{Msg: `want a JSON object with "rules" and "default"`}
	}
	if err := checkKeys("", top, "rules", "default"); err != nil {
		return err
	}
	if rules, ok := top["rules"].([]any); ok {
		for i, r := range rules {
			field := fmt.Sprintf("rules[%d]", i)
			rule, ok := r.(map[string]any)
			if !ok {
				return &ScriptError{Field: field, Msg: `want an object with "match" and "reply"`}
			}
			if err := checkKeys(field, rule, "match", "reply"); err != nil {
				return err
			}
			if m, ok := rule["match"].(map[string]any); ok {
				if err := checkKeys(field+".match", m, "contains", "api", "nth"); err != nil {
					return err
				}
			}
			reply, ok := rule["reply"]
			if !ok {
				return &ScriptError{Field: field, Msg: `missing "reply"`}
			}
			if err := checkReply(field+".reply", reply); err != nil {
				return err
			}
		}
	}
	if d, ok := top["default"]; ok && d != nil {
		return checkReply("default", d)
	}
	return nil
}

func checkReply(field string, v any) error {
	reply, ok := v.(map[string]any)
	if !ok {
		return &ScriptError{Field: field, Msg: `want an object with one of "text", "tool_call" or "error"`}
	}
	for _, k := range sortedKeys(reply) {
		if strings.HasPrefix(k, "//") {
			delete(reply, k)
			continue
		}
		if k != "text" && k != "tool_call" && k != "error" {
			return &ScriptError{Field: field, Msg: fmt.Sprintf(`unknown reply kind %q (want "text", "tool_call" or "error")`, k)}
		}
	}
	if len(reply) == 0 {
		return &ScriptError{Field: field, Msg: `empty reply (want "text", "tool_call" or "error")`}
	}
	if _, ok := reply["error"]; ok && len(reply) > 1 {
		return &ScriptError{Field: field, Msg: `"error" can't be combined with "text" or "tool_call"`}
	}
	if tc, ok := reply["tool_call"].(map[string]any); ok {
		if err := checkKeys(field+".tool_call", tc, "name", "input"); err != nil {
			return err
		}
		if in, ok := tc["input"]; ok && in != nil {
			if _, ok := in.(map[string]any); !ok {
				return &ScriptError{Field: field + ".tool_call.input", Msg: "want a JSON object"}
			}
		}
	}
	if e, ok := reply["error"].(map[string]any); ok {
		if err := checkKeys(field+".error", e, "status", "message", "type"); err != nil {
			return err
		}
	}
	return nil
}

func checkKeys(field string, m map[string]any, known ...string) error {
	for _, k := range sortedKeys(m) {
		found := strings.HasPrefix(k, "//") // a comment
		for _, kk := range known {
			found = found || k == kk
		}
		if !found {
			return &ScriptError{Field: field, Msg: fmt.Sprintf("unknown key %q (want %s)", k, quoteList(known))}
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// check validates values the JSON types can't.
func (s *Script) check() error {
	for i, r := range s.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		switch r.Match.API {
		case "", APIAnthropic, APIOpenAIResponses, APIOpenAIChat, APIGemini:
		default:
			return &ScriptError{Field: field + ".match.api", Msg: fmt.Sprintf("unknown api %q (want %s)", r.Match.API,
				quoteList([]string{APIAnthropic, APIOpenAIResponses, APIOpenAIChat, APIGemini}))}
		}
		if r.Match.Nth < 0 {
			return &ScriptError{Field: field + ".match.nth", Msg: "want a count from 1"}
		}
		if err := r.Reply.check(field + ".reply"); err != nil {
			return err
		}
	}
	if s.Default != nil {
		return s.Default.check("default")
	}
	return nil
}

func (r *Reply) check(field string) error {
	if tc := r.ToolCall; tc != nil && tc.Name == "" {
		return &ScriptError{Field: field + ".tool_call.name", Msg: "missing tool name"}
	}
	if e := r.Error; e != nil && (e.Status < 400 || e.Status > 599) {
		return &ScriptError{Field: field + ".error.status", Msg: fmt.Sprintf("want an HTTP error status from 400 to 599, got %d", e.Status)}
	}
	return nil
}

// --- choosing a reply ---

const placeholder = "{{last_user_message}}"

// answer is a reply resolved for one request.
type answer struct {
	text string
	tool *resolvedCall
	err  *ErrorReply
}

type resolvedCall struct {
	name  string
	input string // compact JSON object
}

// decide picks the reply for a request (see Script for the order).
func (s *Server) decide(api string, c *conversation) answer {
	if c.utility() {
		if len(c.schema) > 0 {
			return answer{text: schemaExample(c.schema)}
		}
		if d := s.script; d != nil && d.Default != nil && d.Default.Error == nil && d.Default.ToolCall == nil {
			return resolve(*d.Default, c.lastUser)
		}
		return answer{text: builtinText(c)}
	}
	if s.script == nil {
		return answer{text: builtinText(c)}
	}
	var chosen *Rule
	s.mu.Lock()
	for i := range s.script.Rules {
		r := &s.script.Rules[i]
		if r.Match.API != "" && r.Match.API != api || !strings.Contains(c.lastUser, r.Match.Contains) {
			continue
		}
		s.counts[i]++
		if chosen == nil && (r.Match.Nth == 0 || r.Match.Nth == s.counts[i]) {
			chosen = r
		}
	}
	s.mu.Unlock()
	switch {
	case chosen != nil:
		return resolve(chosen.Reply, c.lastUser)
	case c.afterTool:
		return answer{text: "done: " + truncate(c.toolResult, 200)}
	case s.script.Default != nil:
		return resolve(*s.script.Default, c.lastUser)
	}
	return answer{text: builtinText(c)}
}

func builtinText(c *conversation) string {
	return "fake reply to: " + truncate(c.lastUser, 500)
}

// resolve fills the placeholder in a reply.
func resolve(r Reply, lastUser string) answer {
	if r.Error != nil {
		e := *r.Error
		e.Message = strings.ReplaceAll(e.Message, placeholder, lastUser)
		if e.Message == "" {
			e.Message = "fake model error"
		}
		return answer{err: &e}
	}
	a := answer{text: strings.ReplaceAll(r.Text, placeholder, lastUser)}
	if tc := r.ToolCall; tc != nil {
		a.tool = &resolvedCall{name: tc.Name, input: toolInput(tc.Input, lastUser)}
	}
	return a
}

// toolInput compacts a tool input and fills the placeholder. The
// placeholder can only occur inside JSON strings ("{{" is never JSON
// syntax), so it is replaced by the message's JSON string escaping.
func toolInput(raw json.RawMessage, lastUser string) string {
	var buf bytes.Buffer
	if len(raw) == 0 || json.Compact(&buf, raw) != nil || buf.String() == "null" {
		return "{}"
	}
	esc, _ := marshal(lastUser)
	return strings.ReplaceAll(buf.String(), placeholder, string(esc[1:len(esc)-1]))
}

// schemaExample returns a small JSON value that satisfies a JSON schema (or
// Gemini's OpenAPI-style schema, whose type names are upper case), so a
// CLI's structured side question — Gemini CLI asks who speaks next — gets an
// answer it can parse. Enums take their first value.
func schemaExample(schema json.RawMessage) string {
	var s any
	if json.Unmarshal(schema, &s) != nil {
		return "{}"
	}
	b, err := marshal(exampleOf(s, 0))
	if err != nil {
		return "{}"
	}
	return string(b)
}

func exampleOf(v any, depth int) any {
	s, ok := v.(map[string]any)
	if !ok || depth > 8 {
		return nil
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	if c, ok := s["const"]; ok {
		return c
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if alts, ok := s[k].([]any); ok && len(alts) > 0 {
			return exampleOf(alts[0], depth+1)
		}
	}
	typ, _ := s["type"].(string)
	if types, ok := s["type"].([]any); ok && len(types) > 0 {
		typ, _ = types[0].(string)
	}
	switch strings.ToLower(typ) {
	case "string":
		return "fake"
	case "integer", "number":
		return 0
	case "boolean":
		return false
	case "array":
		return []any{}
	case "null":
		return nil
	}
	out := map[string]any{}
	props, _ := s["properties"].(map[string]any)
	for k, p := range props {
		out[k] = exampleOf(p, depth+1)
	}
	return out
}
