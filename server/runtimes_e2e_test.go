package server_test

import (
	"encoding/json"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/fakemodel"
	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// These tests run the real agent CLIs, installed from npm by the runner's
// install_runtime stage, against the fake model API: two turns each for
// claude and codex (the second must resume the first's conversation), one
// turn each for opencode and gemini. The first run downloads the CLIs into
// the shared runtime cache (see apitest.RuntimeDir); later runs reuse it.

// turnOutput streams a session to its terminal event and returns the
// concatenated stdout of the given turn and the terminal event.
func turnOutput(t *testing.T, a *apitest.Server, token, id string, turn int) (string, map[string]any) {
	out, end, _ := turnEvents(t, a, token, id, turn)
	return out, end
}

// turnEvents is turnOutput plus the stage events seen. The first run
// installs the CLI from npm: the stream gets ten minutes.
func turnEvents(t *testing.T, a *apitest.Server, token, id string, turn int) (string, map[string]any, []map[string]any) {
	t.Helper()
	s := a.Stream(token, id, apitest.StreamOptions{Patience: 10 * time.Minute, Stop: testkit.Frame.Terminal})
	if !s.Last().Terminal() {
		t.Fatalf("stream of %s ended without a terminal event (%v)", id, s.Types())
	}
	var stages []map[string]any
	for _, e := range s.Events {
		if e.Type() == "stage" {
			stages = append(stages, e.Data)
			if e.Data["state"] == "failed" {
				t.Logf("stage %v failed: %v", e.Data["stage"], e.Data["message"])
			}
		}
	}
	out, end := s.Output("stdout", turn), s.Last().Data
	if end["type"] != "exit" || end["code"] != 0.0 {
		t.Logf("turn %d stdout:\n%s\nstderr:\n%s", turn, out, s.Output("stderr", turn))
	}
	return out, end, stages
}

// assistantText pulls the assistant's text out of a CLI's JSON-lines output
// (each CLI has its own event vocabulary; gemini streams deltas).
func assistantText(runtime, out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		str := func(v any) string { s, _ := v.(string); return s }
		switch runtime {
		case "claude":
			if e["type"] == "assistant" {
				msg, _ := e["message"].(map[string]any)
				content, _ := msg["content"].([]any)
				for _, c := range content {
					if m, _ := c.(map[string]any); m["type"] == "text" {
						b.WriteString(str(m["text"]))
					}
				}
			}
		case "codex":
			if item, _ := e["item"].(map[string]any); e["type"] == "item.completed" && item["type"] == "agent_message" {
				b.WriteString(str(item["text"]))
			}
		case "opencode":
			if part, _ := e["part"].(map[string]any); e["type"] == "text" {
				b.WriteString(str(part["text"]))
			}
		case "gemini":
			if e["type"] == "message" && e["role"] == "assistant" {
				b.WriteString(str(e["content"]))
			}
		}
	}
	return b.String()
}

// requestsContaining returns the model requests whose body contains s.
func requestsContaining(f *fakemodel.Server, s string) []fakemodel.Request {
	var out []fakemodel.Request
	for _, r := range f.Requests() {
		if strings.Contains(string(r.Body), s) {
			out = append(out, r)
		}
	}
	return out
}

const e2eSkill = "---\nname: greeting\ndescription: Greets people.\n---\nSay hello warmly.\n"

type runtimeCase struct {
	runtime, model  string
	turns           int
	mcpFile, mcpKey string // where the CLI reads MCP servers, and a key naming ours
	skillFile       string // where the inline skill must land
	costSource      string // who prices its turns
}

func TestRealRuntimesAgainstFakeModel(t *testing.T) {
	t.Parallel()
	cases := []runtimeCase{
		{"claude", "anthropic/claude-sonnet-4-6", 2, ".claude.json", `"mcpServers"`, ".claude/skills/greeting/SKILL.md", "cli"},
		{"codex", "openai/gpt-4.1", 2, ".codex/config.toml", "[mcp_servers.docs]", ".codex/skills/greeting/SKILL.md", "price_table"},
		{"opencode", "anthropic/claude-sonnet-4-6", 1, ".config/opencode/opencode.json", `"mcp"`, ".config/opencode/skills/greeting/SKILL.md", "cli"},
		{"gemini", "google/gemini-2.5-pro", 1, ".gemini/settings.json", `"mcpServers"`, ".gemini/skills/greeting/SKILL.md", "price_table"},
	}
	for _, c := range cases {
		t.Run(c.runtime, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			a := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, Keyless: func(string) bool { return true }})
			token := a.Token("e2e")
			agent := a.MustCreate("/agents", token, map[string]any{
				"name": c.runtime, "runtime": c.runtime, "model": c.model,
				"system":      "You are a careful test agent.",
				"mcp_servers": []any{map[string]any{"name": "docs", "command": "true"}},
				"skills":      []any{map[string]any{"name": "greeting", "description": "Greets people.", "content": e2eSkill}},
			})
			r := a.Do("POST", "/sessions", token, map[string]any{"agent_id": agent["id"], "prompt": "first question for " + c.runtime, "timeout": 600})
			is.Equal(r.Status, 202) // session accepted without a model key: the server points the CLI at the fake
			id := r.Obj()["id"].(string)

			out, end, stages := turnEvents(t, a, token, id, 1)
			installMsg := ""
			for _, st := range stages {
				if st["stage"] == "install_runtime" && st["state"] == "done" {
					installMsg, _ = st["message"].(string)
				}
			}
			is.True(strings.Contains(installMsg, " ready (")) // install_runtime says which CLI is ready (see installMsg)
			is.Equal(end["type"], "exit")                     // turn 1 ended with an exit
			is.Equal(end["code"], 0.0)                        // and succeeded
			reply := assistantText(c.runtime, out)
			is.True(strings.Contains(reply, "fake reply to: You are a careful test agent.")) // the CLI printed the fake model's reply to the system prompt + prompt (see reply)
			is.True(strings.Contains(reply, "first question for "+c.runtime))                // which carried the turn's prompt

			mcp, err := a.SpriteFile(id, path.Join(sprite.HomeDir, c.mcpFile))
			is.NoErr(err)                                    // the MCP config is where the CLI reads it
			is.True(strings.Contains(string(mcp), c.mcpKey)) // with the servers' key
			is.True(strings.Contains(string(mcp), "docs"))   // naming our server
			skill, err := a.SpriteFile(id, path.Join(sprite.HomeDir, c.skillFile))
			is.NoErr(err)                     // the skill file is where the CLI reads it
			is.Equal(string(skill), e2eSkill) // with exactly the content sent

			if c.turns == 2 {
				r = a.Do("POST", "/sessions/"+id+"/prompt", token, map[string]any{"prompt": "second question for " + c.runtime})
				is.Equal(r.Status, 202) // follow-up accepted
				out, end = turnOutput(t, a, token, id, 2)
				is.Equal(end["type"], "exit") // turn 2 ended with an exit
				is.Equal(end["code"], 0.0)    // and succeeded
				reply = assistantText(c.runtime, out)
				is.True(strings.Contains(reply, "fake reply to: second question for "+c.runtime)) // with the reply to the new prompt, unprefixed
				resumed := requestsContaining(a.Fake, "second question for "+c.runtime)
				is.True(len(resumed) > 0) // the fake received turn 2
				carried := false
				for _, req := range resumed {
					carried = carried || strings.Contains(string(req.Body), "first question for "+c.runtime)
				}
				is.True(carried) // turn 2's request carried turn 1's messages: the CLI resumed its conversation
			}
			is.True(len(a.Fake.Requests()) > 0) // the CLI called the model
			for _, req := range a.Fake.Requests() {
				is.True(req.API != fakemodel.APIUnknown) // every model request reached a route the fake serves (see req.Path)
			}
			turns := a.Do("GET", "/sessions/"+id+"/turns", token, nil)
			is.Equal(len(turns.Data()), c.turns) // one turn row per prompt
			for i, tt := range turns.Data() {
				turn := tt.(map[string]any)
				result, _ := turn["result"].(string)
				is.True(strings.Contains(result, "fake reply to:")) // the turn's result is the CLI's final answer (see result)
				usage, _ := turn["usage"].(map[string]any)
				is.True(usage != nil)                         // with its usage
				is.True(usage["input_tokens"].(float64) > 0)  // tokens in
				is.True(usage["output_tokens"].(float64) > 0) // and out
				is.True(usage["cost_usd"].(float64) > 0)      // and a cost
				is.Equal(usage["cost_source"], c.costSource)  // from the CLI, or aod's price table
				t.Logf("turn %d: %v", i+1, usage)
			}
			sess := a.Session(token, id)
			total, _ := sess["usage"].(map[string]any)
			is.True(total != nil && total["input_tokens"].(float64) > 0) // the session carries the totals
		})
	}
}

// An interrupt stops a real CLI in the middle of a tool call (a long
// command the fake model asked for) and keeps the session; the next prompt
// resumes the CLI's conversation, which still holds the interrupted turn.
func TestInterruptThenResumeRealCLIs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ runtime, model, tool, input string }{
		{"claude", "anthropic/claude-sonnet-4-6", "Bash", `{"command": "sleep 600", "description": "wait"}`},
		{"codex", "openai/gpt-4.1", "exec_command", `{"cmd": "sleep 600", "yield_time_ms": 300000}`},
	} {
		t.Run(c.runtime, func(t *testing.T) {
			t.Parallel()
			is := is.New(t)
			script := &fakemodel.Script{Rules: []fakemodel.Rule{{Match: fakemodel.Match{Contains: "start the long job"},
				Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: c.tool, Input: json.RawMessage(c.input)}}}}}
			a := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, Keyless: func(string) bool { return true }, FakeScript: script})
			token := a.Token("e2e")
			agent := a.MustCreate("/agents", token, map[string]any{"name": c.runtime, "runtime": c.runtime, "model": c.model})
			id := a.StartSession(token, map[string]any{"agent_id": agent["id"], "prompt": "please start the long job", "timeout": 600})
			running := testkit.Eventually(3*time.Minute, func() bool {
				return slices.Contains(testkit.Comms(testkit.SessionProcs(id)), "sleep")
			})
			is.True(running) // the CLI ran the long command the model asked for
			r := a.Do("POST", "/sessions/"+id+"/interrupt", token, nil)
			is.Equal(r.Status, http.StatusAccepted)                                         // interrupted
			is.Equal(a.WaitStatus(token, id, "completed", "failed")["status"], "completed") // the session completed
			turns := a.Do("GET", "/sessions/"+id+"/turns", token, nil).Data()
			is.Equal(turns[0].(map[string]any)["interrupted"], true) // the turn was interrupted

			r = a.Do("POST", "/sessions/"+id+"/prompt", token, map[string]any{"prompt": "what happened to the job?"})
			is.Equal(r.Status, http.StatusAccepted)                                         // the next prompt is taken at once
			is.Equal(a.WaitStatus(token, id, "completed", "failed")["status"], "completed") // and runs
			resumed := requestsContaining(a.Fake, "what happened to the job?")
			is.True(len(resumed) > 0) // the model got turn 2
			carried := false
			for _, req := range resumed {
				carried = carried || strings.Contains(string(req.Body), "please start the long job")
			}
			is.True(carried) // with turn 1's messages: the CLI resumed its conversation
		})
	}
}

// A session's budget stops a real CLI mid-turn where it reports its cost
// as it goes (opencode, step by step): the turn ends as an interrupt, and
// the session takes no more prompts.
func TestBudgetStopsOpencodeMidTurn(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	// Step 1 runs a short command; its step's cost (opencode reports it
	// when the step ends) spends the budget while step 2 runs a long one.
	script := &fakemodel.Script{Rules: []fakemodel.Rule{
		{Match: fakemodel.Match{Contains: "start the long job"},
			Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "bash", Input: json.RawMessage(`{"command": "echo first-step-done", "description": "first"}`)}}},
		{Match: fakemodel.Match{Contains: "first-step-done"},
			Reply: fakemodel.Reply{ToolCall: &fakemodel.ToolCall{Name: "bash", Input: json.RawMessage(`{"command": "sleep 600", "description": "wait"}`)}}},
	}}
	a := apitest.New(t, apitest.Options{Runner: apitest.RealRunner, Keyless: func(string) bool { return true }, FakeScript: script})
	token := a.Token("e2e")
	agent := a.MustCreate("/agents", token, map[string]any{"name": "oc", "runtime": "opencode", "model": "anthropic/claude-sonnet-4-6"})
	id := a.StartSession(token, map[string]any{"agent_id": agent["id"], "prompt": "please start the long job", "timeout": 600, "budget_usd": 0.000001})
	// The first run on a fresh machine installs opencode from npm, so the
	// wait is turnEvents' (ten minutes, the length of the command: had
	// the budget not stopped it, the turn would not say interrupted).
	_, end, _ := turnEvents(t, a, token, id, 1)
	is.Equal(end["type"], "exit") // the turn ended with the killed process's exit
	s := a.WaitStatus(token, id, "completed", "failed")
	is.Equal(s["status"], "completed")    // the turn was stopped, as an interrupt
	is.Equal(s["budget_exhausted"], true) // the budget is spent
	turns := a.Do("GET", "/sessions/"+id+"/turns", token, nil).Data()
	is.Equal(turns[0].(map[string]any)["interrupted"], true) // the turn says so, long before the command would have ended
	r := a.Do("POST", "/sessions/"+id+"/prompt", token, map[string]any{"prompt": "more"})
	is.Equal(r.Status, http.StatusConflict)
	is.Equal(r.Obj()["detail"], "Session budget exhausted") // no more prompts
}
