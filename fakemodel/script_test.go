package fakemodel_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/aod/aod/fakemodel"
	"github.com/aod/aod/internal/testkit"
)

// reply asks through the non-streaming Anthropic API and returns the text.
func reply(t *testing.T, url string, body obj) string {
	t.Helper()
	_, raw := post(t, url+"/v1/messages", body)
	s, _ := path(decode(t, raw), "content", 0, "text").(string)
	return s
}

func TestNthRules(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{Rules: []fakemodel.Rule{
		{Match: fakemodel.Match{Contains: "ping", Nth: 2}, Reply: fakemodel.Reply{Text: "second ping"}},
		{Match: fakemodel.Match{Contains: "ping", API: fakemodel.APIOpenAIChat}, Reply: fakemodel.Reply{Text: "chat pong"}},
		{Match: fakemodel.Match{Contains: "ping"}, Reply: fakemodel.Reply{Text: "pong"}},
	}}
	fm, url := start(t, script)

	is.Equal(reply(t, url, anthropicBody("ping 1", false)), "pong")              // 1st: the nth rule waits
	is.Equal(reply(t, url, anthropicBody("ping 2", false)), "second ping")       // 2nd: it fires
	is.Equal(reply(t, url, anthropicBody("ping 3", false)), "pong")              // 3rd: never again
	is.Equal(reply(t, url, anthropicBody("pong", false)), "fake reply to: pong") // no rule: the built-in default

	_, raw := post(t, url+"/v1/chat/completions", chatBody("ping 4", false))
	is.Equal(path(decode(t, raw), "choices", 0, "message", "content"), "chat pong") // api narrows a rule

	fm.Reset()
	is.Equal(reply(t, url, anthropicBody("ping", false)), "pong")        // Reset restarts the count
	is.Equal(reply(t, url, anthropicBody("ping", false)), "second ping") // so the 2nd fires again
}

func TestPlaceholderAndDefault(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{
		Rules: []fakemodel.Rule{{
			Match: fakemodel.Match{Contains: "echo"},
			Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "Bash", Input: json.RawMessage(`{"command": "printf '%s' \"{{last_user_message}}\""}`)}},
		}},
		Default: &fakemodel.Reply{Text: "default for: {{last_user_message}}"},
	}
	_, url := start(t, script)

	_, raw := post(t, url+"/v1/messages", anthropicBody(`echo "quoted" \ back`, false))
	in := path(decode(t, raw), "content", 0, "input", "command")
	is.Equal(in, `printf '%s' "echo "quoted" \ back"`) // placeholder filled inside a tool input, escaped correctly

	is.Equal(reply(t, url, anthropicBody("anything", false)), "default for: anything") // the script's default
}

func TestToolFollowUpPrecedence(t *testing.T) {
	is := is.New(t)
	followUp := func(result string) obj {
		body := anthropicBody("run it", false)
		body["messages"] = append(body["messages"].([]any),
			obj{"role": "assistant", "content": []any{obj{"type": "tool_use", "id": "t1", "name": "Bash", "input": obj{}}}},
			obj{"role": "user", "content": []any{obj{"type": "tool_result", "tool_use_id": "t1", "content": result}}},
		)
		return body
	}
	long := strings.Repeat("x", 300)

	_, url := start(t, &fakemodel.Script{Default: &fakemodel.Reply{Text: "the default"}})
	is.Equal(reply(t, url, followUp(long)), "done: "+long[:200]) // tool results beat the default, truncated to 200

	_, url = start(t, &fakemodel.Script{Rules: []fakemodel.Rule{{Match: fakemodel.Match{Contains: "xxx"}, Reply: fakemodel.Reply{Text: "rule"}}}})
	is.Equal(reply(t, url, followUp(long)), "rule") // a rule matching the tool result beats "done:"

	_, url = start(t, nil)
	is.Equal(reply(t, url, followUp("out")), "fake reply to: out") // without a script: the plain default
}

func TestBuiltinDefaultTruncates(t *testing.T) {
	is := is.New(t)
	_, url := start(t, nil)
	long := strings.Repeat("é", 600)
	is.Equal(reply(t, url, anthropicBody(long, false)), "fake reply to: "+strings.Repeat("é", 500)) // echo cut to 500 characters
}

func TestUtilityCallsDontConsumeRules(t *testing.T) {
	is := is.New(t)
	script := &fakemodel.Script{
		Rules: []fakemodel.Rule{{
			Match: fakemodel.Match{Contains: "deploy", Nth: 1},
			Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "Bash"}},
		}},
		Default: &fakemodel.Reply{Text: "ok"},
	}
	_, url := start(t, script)

	haiku := obj{"model": "claude-haiku-4-5", "max_tokens": 50,
		"messages": []any{obj{"role": "user", "content": "deploy the app"}}}
	is.Equal(reply(t, url, haiku), "ok") // a haiku background call gets the default text

	title := obj{"model": "claude-sonnet-4-6", "max_tokens": 50,
		"system":   "Generate a short title for this conversation.",
		"messages": []any{obj{"role": "user", "content": "deploy the app"}}}
	is.Equal(reply(t, url, title), "ok") // so does a title request

	_, raw := post(t, url+"/v1/messages", anthropicBody("deploy the app", false))
	is.Equal(path(decode(t, raw), "content", 0, "type"), "tool_use") // the agent's own call still gets the nth=1 rule

	haikuAgent := anthropicBody("hello", false)
	haikuAgent["model"] = "claude-haiku-4-5"
	is.Equal(reply(t, url, haikuAgent), "ok") // a haiku call offering tools is an agent call: rules apply (none match here)
}

func TestLastUserMessageExtraction(t *testing.T) {
	for _, tc := range []struct {
		name     string
		messages []any
		want     string
	}{
		{"string content", []any{obj{"role": "user", "content": "plain"}}, "plain"},
		{"reminder after prompt", []any{obj{"role": "user", "content": []any{
			obj{"type": "text", "text": "the prompt"},
			obj{"type": "text", "text": "<system-reminder>noise</system-reminder>"},
		}}}, "the prompt"},
		{"reminder inline", []any{obj{"role": "user", "content": "<system-reminder>noise</system-reminder>\nreal words"}}, "real words"},
		{"last turn only", []any{
			obj{"role": "user", "content": "turn one"},
			obj{"role": "assistant", "content": "answer one"},
			obj{"role": "user", "content": "turn two"},
		}, "turn two"},
		{"assistant prefill", []any{
			obj{"role": "user", "content": "question"},
			obj{"role": "assistant", "content": "{"},
		}, "question"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			fm, url := start(t, nil)
			body := anthropicBody("", false)
			body["messages"] = tc.messages
			post(t, url+"/v1/messages", body)
			is.Equal(fm.Requests()[0].LastUserMessage, tc.want) // the user's words, not CLI noise
		})
	}
}

func TestGoldenTranscripts(t *testing.T) {
	script := &fakemodel.Script{Rules: []fakemodel.Rule{{
		Match: fakemodel.Match{Contains: "use a tool"},
		Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "Bash", Input: json.RawMessage(`{"command":"echo hi"}`)}},
	}}}
	for _, tc := range []struct {
		file, path string
		body       obj
	}{
		{"anthropic_text.golden", "/v1/messages?beta=true", anthropicBody("hello", true)},
		{"anthropic_tool.golden", "/v1/messages?beta=true", anthropicBody("use a tool", true)},
		{"responses_text.golden", "/v1/responses", responsesBody("hello", true)},
		{"responses_tool.golden", "/v1/responses", responsesBody("use a tool", true)},
		{"chat_text.golden", "/v1/chat/completions", chatBody("hello", true)},
		{"chat_tool.golden", "/v1/chat/completions", chatBody("use a tool", true)},
		{"gemini_text.golden", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", geminiBody("hello")},
		{"gemini_tool.golden", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", geminiBody("use a tool")},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, url := start(t, script)
			_, raw := post(t, url+tc.path, tc.body)
			testkit.Golden(t, filepath.Join("..", "testdata", "fakemodel", tc.file), raw) // the transcript matches the golden file
		})
	}
}

func TestLoadScriptExample(t *testing.T) {
	is := is.New(t)
	s, err := fakemodel.LoadScript(filepath.Join("..", "testdata", "fakemodel", "example.json"))
	is.NoErr(err)                                                 // the documented example loads
	is.Equal(len(s.Rules), 6)                                     // all its rules
	is.Equal(s.Rules[0].Reply.ToolCall.Name, "Bash")              // a tool call
	is.Equal(s.Rules[2].Match.Nth, 1)                             // an nth rule
	is.Equal(s.Rules[2].Reply.Error.Status, 529)                  // an error reply
	is.Equal(s.Default.Text, "fake model: {{last_user_message}}") // the default

	_, url := start(t, s)
	is.Equal(reply(t, url, anthropicBody("flaky thing", false)), "")                  // first flaky: an error, no text
	is.Equal(reply(t, url, anthropicBody("flaky thing", false)), "second try worked") // then the next rule
}

func TestLoadScriptErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, script string
		want         string // the whole message, after the file name
		line, col    int
	}{
		{"syntax", "{\n  \"rules\": [\n    {\"match\": {}, }\n  ]\n}", `:3:19: invalid JSON: invalid character '}' looking for beginning of object key string`, 3, 19},
		{"type", "{\"rules\": [{\"match\": {\"nth\": \"2\"}, \"reply\": {\"text\": \"x\"}}]}", `:1:32: rules.match.nth: want int, got JSON string`, 1, 32},
		{"not an object", `[]`, `: want a JSON object with "rules" and "default"`, 0, 0},
		{"unknown top key", `{"rulez": []}`, `: unknown key "rulez" (want "rules", "default")`, 0, 0},
		{"unknown match key", `{"rules": [{"match": {"contians": "x"}, "reply": {"text": "y"}}]}`, `: rules[0].match: unknown key "contians" (want "contains", "api", "nth")`, 0, 0},
		{"unknown reply kind", `{"rules": [{"reply": {"text": "a"}}, {"reply": {"txt": "y"}}]}`, `: rules[1].reply: unknown reply kind "txt" (want "text", "tool_call" or "error")`, 0, 0},
		{"empty reply", `{"default": {}}`, `: default: empty reply (want "text", "tool_call" or "error")`, 0, 0},
		{"missing reply", `{"rules": [{"match": {}}]}`, `: rules[0]: missing "reply"`, 0, 0},
		{"error with text", `{"rules": [{"reply": {"text": "a", "error": {"status": 500}}}]}`, `: rules[0].reply: "error" can't be combined with "text" or "tool_call"`, 0, 0},
		{"bad status", `{"rules": [{"reply": {"error": {"status": 200}}}]}`, `: rules[0].reply.error.status: want an HTTP error status from 400 to 599, got 200`, 0, 0},
		{"no tool name", `{"rules": [{"reply": {"tool_call": {"input": {}}}}]}`, `: rules[0].reply.tool_call.name: missing tool name`, 0, 0},
		{"input not object", `{"rules": [{"reply": {"tool_call": {"name": "Bash", "input": "ls"}}}]}`, `: rules[0].reply.tool_call.input: want a JSON object`, 0, 0},
		{"unknown api", `{"rules": [{"match": {"api": "claude"}, "reply": {"text": "x"}}]}`, `: rules[0].match.api: unknown api "claude" (want "anthropic", "openai-responses", "openai-chat", "gemini")`, 0, 0},
		{"negative nth", `{"rules": [{"match": {"nth": -1}, "reply": {"text": "x"}}]}`, `: rules[0].match.nth: want a count from 1`, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			is.NoErr(os.WriteFile(file, []byte(tc.script), 0o644)) // script written

			s, err := fakemodel.LoadScript(file)
			is.True(s == nil)                                        // no script
			is.Equal(err.Error(), "fakemodel: script "+file+tc.want) // a message naming file, place and problem
			var se *fakemodel.ScriptError
			is.True(errors.As(err, &se))                                // a *ScriptError
			is.Equal(se.File, file)                                     // with the file
			is.Equal([]int{se.Line, se.Column}, []int{tc.line, tc.col}) // and the position, when there is one
		})
	}

	t.Run("missing file", func(t *testing.T) {
		is := is.New(t)
		_, err := fakemodel.LoadScript(filepath.Join(dir, "nope.json"))
		is.True(errors.Is(err, os.ErrNotExist))                                  // the file system's error
		is.True(strings.HasPrefix(err.Error(), "fakemodel: load script: open ")) // says what failed
	})

	t.Run("comments allowed", func(t *testing.T) {
		is := is.New(t)
		_, err := fakemodel.ParseScript([]byte(`{"//": "a note", "rules": [{"//": "why", "match": {"//": 1}, "reply": {"//": 2, "text": "x"}}]}`))
		is.NoErr(err) // "//" keys are comments anywhere
	})
}
