package runtimes

import (
	"context"
	"encoding/json"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// claudeRuntime runs Claude Code (@anthropic-ai/claude-code).
//
// Verified against 2.1.197 (`claude --help`, and real turns in a bwrap
// sprite with the install mounted read-only, against a local fake of
// POST /v1/messages):
//   - --print --verbose --output-format stream-json prints one JSON
//     object per line: system/init (session_id, mcp_servers, skills),
//     assistant, user, result (usage, total_cost_usd);
//   - --session-id <uuid> names the conversation on turn 1 ("must be a
//     valid UUID"); --resume <uuid> with the same HOME and cwd continues
//     it (the next request carried the earlier turns' messages);
//   - --dangerously-skip-permissions is refused as root unless
//     IS_SANDBOX=1;
//   - ANTHROPIC_BASE_URL + ANTHROPIC_API_KEY (sent as x-api-key) reach a
//     plain-http 127.0.0.1 endpoint from inside bwrap (--share-net);
//   - MCP servers in ~/.claude.json's mcpServers and skills in
//     ~/.claude/skills/<name>/SKILL.md show up in system/init.
type claudeRuntime struct{ ep Endpoints }

func (claudeRuntime) Name() string { return "claude" }

func (claudeRuntime) Argv(s *store.Session, turn int) []string {
	argv := []string{"claude", "--dangerously-skip-permissions", "--print", "--verbose",
		"--output-format", "stream-json", "--model", modelID(s)}
	switch {
	case turn <= 1:
		return append(argv, "--session-id", s.RuntimeSessionID)
	case s.RuntimeSessionID != "":
		return append(argv, "--resume", s.RuntimeSessionID)
	default:
		// A session provisioned without an id: the most recent
		// conversation in the (stable) cwd is this session's.
		return append(argv, "--continue")
	}
}

func (c claudeRuntime) Env(s *store.Session, sp sprite.Sprite, env map[string]string) {
	setDefault(env, "IS_SANDBOX", "1") // the sprite is the sandbox; the CLI runs as root under bwrap
	setDefault(env, "DISABLE_AUTOUPDATER", "1")
	setDefault(env, "DISABLE_TELEMETRY", "1")
	setDefault(env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
	if c.ep.Anthropic != "" {
		env["ANTHROPIC_BASE_URL"] = endpointRoot(c.ep.Anthropic)
		if !hasAny(env, catalogue.CredentialNames("claude", "anthropic")...) {
			env["ANTHROPIC_API_KEY"] = placeholderKey
		}
	}
}

// claudeConfig is Claude Code's user config file, which it also uses for
// its own state (userID, migrations, projects…): only mcpServers is ours.
const claudeConfig = sprite.HomeDir + "/.claude.json"

func (claudeRuntime) Configure(ctx context.Context, sp sprite.Sprite, s *store.Session, mcp []MCPServer) error {
	if len(mcp) == 0 {
		return nil
	}
	servers := map[string]any{}
	for _, m := range mcp {
		switch m.Type {
		case "url":
			e := map[string]any{"type": "http", "url": m.URL}
			if len(m.Headers) > 0 {
				e["headers"] = m.Headers // ${VAR} references are expanded by claude
			}
			servers[m.Name] = e
		case "stdio":
			args := m.Args
			if args == nil {
				args = []string{}
			}
			e := map[string]any{"type": "stdio", "command": m.Command, "args": args}
			if len(m.Env) > 0 {
				e["env"] = m.Env
			}
			servers[m.Name] = e
		}
	}
	return mergeJSONFile(ctx, sp, claudeConfig, 0o600, func(top map[string]json.RawMessage) error {
		return mergeObject(top, "mcpServers", servers)
	})
}

func (claudeRuntime) Skills() (string, string) {
	return sprite.HomeDir + "/.claude/skills", "claude-code"
}
func (claudeRuntime) NewSessionID() string { return newUUID() }
func (claudeRuntime) Parser() Parser       { return &claudeParser{} }

// claudeParser reads stream-json: the session id of system/init and the
// result line's answer, usage and cost (per run, so per turn).
type claudeParser struct{ rep Report }

func (p *claudeParser) Line(b []byte) {
	var ev struct {
		Type      string   `json:"type"`
		Subtype   string   `json:"subtype"`
		SessionID string   `json:"session_id"`
		Result    *string  `json:"result"`
		TotalCost *float64 `json:"total_cost_usd"`
		Usage     *struct {
			InputTokens              *int64 `json:"input_tokens"`
			OutputTokens             *int64 `json:"output_tokens"`
			CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
			CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
		} `json:"usage"`
	}
	if !jsonLine(b, &ev) {
		return
	}
	switch {
	case ev.Type == "system" && ev.Subtype == "init" && ev.SessionID != "":
		p.rep.SessionID = ev.SessionID
	case ev.Type == "result":
		if ev.SessionID != "" {
			p.rep.SessionID = ev.SessionID
		}
		if ev.Result != nil {
			p.rep.Result = ev.Result
		}
		u := &Usage{CostUSD: ev.TotalCost}
		if ev.Usage != nil {
			u.InputTokens = ev.Usage.InputTokens
			u.OutputTokens = ev.Usage.OutputTokens
			u.CachedInputTokens = ev.Usage.CacheReadInputTokens
			u.CacheCreationInputTokens = ev.Usage.CacheCreationInputTokens
		}
		p.rep.Usage = u
	}
}

func (p *claudeParser) Report() Report { return p.rep }
