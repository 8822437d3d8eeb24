package runtimes

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// geminiRuntime runs the Gemini CLI (@google/gemini-cli).
//
// Verified against 0.61.0 (`gemini --help`, its bundle's sources, and
// real turns in a bwrap sprite with the install mounted read-only,
// against a local fake of POST /v1beta/models/<m>:streamGenerateContent):
//   - with stdin not a terminal the prompt is read from stdin and the run
//     is headless; --output-format stream-json prints JSON lines: init
//     (session_id, model), message, tool_use, tool_result, result
//     (stats: input_tokens, output_tokens, cached, total_tokens);
//   - --session-id <uuid> starts a session with our id; --resume <uuid>
//     continues it (the resolver takes "latest", an index or a session
//     UUID; the next request carried the earlier turn's messages);
//   - --yolo alone is overridden to "default" approvals in a folder that
//     is not trusted ("Approval mode overridden to \"default\" because the
//     current folder is not trusted"); --skip-trust trusts cwd for the run;
//   - GOOGLE_GEMINI_BASE_URL (plain http allowed for 127.0.0.1) moves the
//     API, but on its own selects the "gateway" auth type, which headless
//     runs reject ("Invalid auth method selected."): settings.json's
//     security.auth.selectedType = "gemini-api-key" fixes that, and the
//     key (GEMINI_API_KEY) is sent as x-goog-api-key;
//   - mcpServers in ~/.gemini/settings.json are contacted at start; skills
//     in ~/.gemini/skills/<name>/SKILL.md reach the model's prompt.
type geminiRuntime struct{ ep Endpoints }

const geminiSettings = sprite.HomeDir + "/.gemini/settings.json"

func (geminiRuntime) Name() string { return "gemini" }

func (geminiRuntime) Argv(s *store.Session, turn int) []string {
	argv := []string{"gemini", "--output-format", "stream-json", "--model", modelID(s), "--yolo", "--skip-trust"}
	switch {
	case turn <= 1:
		return append(argv, "--session-id", s.RuntimeSessionID)
	case s.RuntimeSessionID != "":
		return append(argv, "--resume", s.RuntimeSessionID)
	default:
		return append(argv, "--resume", "latest")
	}
}

func (g geminiRuntime) Env(s *store.Session, sp sprite.Sprite, env map[string]string) {
	if g.ep.Gemini != "" {
		env["GOOGLE_GEMINI_BASE_URL"] = endpointRoot(g.ep.Gemini)
		if !hasAny(env, "GEMINI_API_KEY") {
			env["GEMINI_API_KEY"] = placeholderKey
		}
	}
}

// Configure merges the auth type, usage statistics off and the MCP
// servers into settings.json, leaving values the file already has.
func (geminiRuntime) Configure(ctx context.Context, sp sprite.Sprite, s *store.Session, mcp []MCPServer) error {
	servers := map[string]any{}
	for _, m := range mcp {
		switch m.Type {
		case "url":
			e := map[string]any{"httpUrl": m.URL, "trust": true}
			if len(m.Headers) > 0 {
				e["headers"] = m.Headers // gemini expands ${VAR} in settings
			}
			servers[m.Name] = e
		case "stdio":
			args := m.Args
			if args == nil {
				args = []string{}
			}
			e := map[string]any{"command": m.Command, "args": args, "trust": true}
			if len(m.Env) > 0 {
				e["env"] = m.Env
			}
			servers[m.Name] = e
		}
	}
	return mergeJSONFile(ctx, sp, geminiSettings, 0o644, func(top map[string]json.RawMessage) error {
		if err := setPath(top, "gemini-api-key", false, "security", "auth", "selectedType"); err != nil {
			return err
		}
		if err := setPath(top, false, false, "privacy", "usageStatisticsEnabled"); err != nil {
			return err
		}
		if len(servers) == 0 {
			return nil
		}
		return mergeObject(top, "mcpServers", servers)
	})
}

func (geminiRuntime) Skills() (string, string) {
	return sprite.HomeDir + "/.gemini/skills", "gemini-cli"
}
func (geminiRuntime) NewSessionID() string { return newUUID() }
func (geminiRuntime) Parser() Parser       { return &geminiParser{} }

// geminiParser reads stream-json: init's session_id, the assistant's
// answer and result's stats.
type geminiParser struct {
	rep  Report
	text strings.Builder
}

func (p *geminiParser) Line(b []byte) {
	var ev struct {
		Type      string `json:"type"`
		SessionID string `json:"session_id"`
		Role      string `json:"role"`
		Content   string `json:"content"`
		Stats     *struct {
			InputTokens  *int64 `json:"input_tokens"`
			OutputTokens *int64 `json:"output_tokens"`
			Cached       *int64 `json:"cached"`
		} `json:"stats"`
	}
	if !jsonLine(b, &ev) {
		return
	}
	switch ev.Type {
	case "init":
		if ev.SessionID != "" {
			p.rep.SessionID = ev.SessionID
		}
	case "message":
		// The answer is the assistant's text after the last user message,
		// which arrives in deltas.
		switch ev.Role {
		case "user":
			p.text.Reset()
		case "assistant":
			p.text.WriteString(ev.Content)
			text := p.text.String()
			p.rep.Result = &text
		}
	case "result":
		if ev.Stats != nil {
			p.rep.Usage = &Usage{InputTokens: ev.Stats.InputTokens, OutputTokens: ev.Stats.OutputTokens,
				CachedInputTokens: ev.Stats.Cached}
		}
	}
}

func (p *geminiParser) Report() Report { return p.rep }
