package runtimes

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// codexRuntime runs the Codex CLI (@openai/codex).
//
// Verified against 0.169.0 (`codex exec --help`, `codex exec resume
// --help`, and real turns in a bwrap sprite with the install mounted
// read-only, against a local fake of POST /v1/responses):
//   - `codex exec --json --skip-git-repo-check -m <model>
//     --dangerously-bypass-approvals-and-sandbox` reads the prompt from
//     stdin and prints JSONL: thread.started (thread_id), turn.started,
//     item.*, turn.completed (usage); without --skip-git-repo-check it
//     refuses to run outside a git repository;
//   - `codex exec [same flags] resume <thread_id>` (flags before resume)
//     continues the thread, prompt again on stdin;
//   - `-c model_providers.aod.base_url="…"` (a TOML value) overrides
//     config.toml's, on exec and on resume;
//   - a custom provider in $CODEX_HOME/config.toml (model_provider =
//     "aod", [model_providers.aod] base_url, env_key, wire_api =
//     "responses") sends Authorization: Bearer $OPENAI_API_KEY to
//     base_url + "/responses"; no auth.json is needed;
//   - turn.completed's usage after a resume is the thread's running
//     total (13 input tokens on turn 1, 26 on turn 2 for equal requests);
//   - [mcp_servers.<name>] with url, bearer_token_env_var, http_headers,
//     env_http_headers, or command, args, env_vars and an env table, are
//     accepted; `required = true` makes every turn fail when the server
//     cannot be reached ("required MCP servers failed to initialize").
type codexRuntime struct{ ep Endpoints }

// codexHome is CODEX_HOME: config.toml and the saved threads live there.
const codexHome = sprite.HomeDir + "/.codex"

func (codexRuntime) Name() string { return "codex" }

// Argv passes the provider's base_url on every turn (-c overrides
// config.toml, on resumes too): config.toml is written once, at
// provisioning, and a server started later may talk to another endpoint.
func (c codexRuntime) Argv(s *store.Session, turn int) []string {
	argv := []string{"codex", "exec", "--json", "--skip-git-repo-check", "-m", modelID(s),
		"--dangerously-bypass-approvals-and-sandbox", "-c", "model_providers.aod.base_url=" + tomlString(c.baseURL())}
	switch {
	case turn <= 1:
		return argv
	case s.RuntimeSessionID != "":
		return append(argv, "resume", s.RuntimeSessionID)
	default:
		// Turn 1 printed no thread id: the newest thread is this session's.
		return append(argv, "resume", "--last")
	}
}

func (c codexRuntime) Env(s *store.Session, sp sprite.Sprite, env map[string]string) {
	env["CODEX_HOME"] = sp.Path(codexHome)
	if c.ep.OpenAI != "" && !hasAny(env, "OPENAI_API_KEY") {
		env["OPENAI_API_KEY"] = placeholderKey
	}
}

// baseURL is the aod provider's base_url: the configured endpoint or
// the real API.
func (c codexRuntime) baseURL() string {
	if c.ep.OpenAI != "" {
		return endpointRoot(c.ep.OpenAI) + "/v1"
	}
	return "https://api.openai.com/v1"
}

// Configure writes $CODEX_HOME/config.toml, which aod owns (it is written
// before the CLI first runs): an env_key provider, so the key stays in
// the environment and no auth.json is written, then the MCP servers. The
// base_url in it is a fallback for running codex by hand; turns pass the
// current one (see Argv).
func (c codexRuntime) Configure(ctx context.Context, sp sprite.Sprite, s *store.Session, mcp []MCPServer) error {
	doc, err := c.config(mcp)
	if err != nil {
		return err
	}
	return sp.WriteFile(ctx, codexHome+"/config.toml", doc, 0o600)
}

var bearerRef = regexp.MustCompile(`^Bearer \$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

func (c codexRuntime) config(mcp []MCPServer) ([]byte, error) {
	var d tomlDoc
	d.comment("Written by aod at provisioning: the model provider and the agent's MCP servers.")
	d.comment("Each turn passes the current base_url with -c, so the one below is only a fallback.")
	d.str("model_provider", "aod")
	d.table("model_providers", "aod")
	d.str("name", "aod")
	d.str("base_url", c.baseURL())
	d.str("env_key", "OPENAI_API_KEY")
	d.str("wire_api", "responses")
	for _, m := range mcp {
		switch m.Type {
		case "url":
			d.table("mcp_servers", m.Name)
			d.str("url", m.URL)
			// Not `required = true` like the original: an unreachable server
			// would then fail every turn, which no other runtime does.
			literal, fromEnv := map[string]string{}, map[string]string{}
			for _, k := range store.SortedKeys(m.Headers) {
				v := m.Headers[k]
				if sub := bearerRef.FindStringSubmatch(v); sub != nil && strings.EqualFold(k, "Authorization") {
					d.str("bearer_token_env_var", sub[1])
					continue
				}
				if sub := envRef.FindStringSubmatch(v); sub != nil {
					fromEnv[k] = sub[1]
					continue
				}
				if envRefs.MatchString(v) {
					return nil, fmt.Errorf("MCP server %s: codex cannot expand ${…} inside header %s; use \"Bearer ${VAR}\" for Authorization or a header whose whole value is ${VAR}", m.Name, k)
				}
				literal[k] = v
			}
			if len(literal) > 0 {
				d.inline("http_headers", literal)
			}
			if len(fromEnv) > 0 {
				d.inline("env_http_headers", fromEnv)
			}
		case "stdio":
			d.table("mcp_servers", m.Name)
			d.str("command", m.Command)
			if len(m.Args) > 0 {
				d.strs("args", m.Args)
			}
			// ${VAR} as a whole value passes the CLI's own variable through
			// (env_vars); codex does not expand references in env values.
			literal := map[string]string{}
			var pass []string
			for _, k := range store.SortedKeys(m.Env) {
				v := m.Env[k]
				if sub := envRef.FindStringSubmatch(v); sub != nil && sub[1] == k {
					pass = append(pass, k)
					continue
				}
				if envRefs.MatchString(v) {
					return nil, fmt.Errorf("MCP server %s: codex cannot expand ${…} in env %s; pass a variable under its own name (%s = \"${%s}\") or a literal value", m.Name, k, k, k)
				}
				literal[k] = v
			}
			if len(pass) > 0 {
				d.strs("env_vars", pass)
			}
			if len(literal) > 0 {
				d.table("mcp_servers", m.Name, "env")
				for _, k := range store.SortedKeys(literal) {
					d.str(k, literal[k])
				}
			}
		}
	}
	return d.bytes(), nil
}

func (codexRuntime) Skills() (string, string) { return codexHome + "/skills", "codex" }
func (codexRuntime) NewSessionID() string     { return "" }
func (codexRuntime) Parser() Parser           { return &codexParser{} }

// codexParser reads exec --json events: thread.started's thread_id, the
// last agent message and turn.completed's usage (the thread's running
// total).
type codexParser struct {
	rep   Report
	total *Usage
}

func (p *codexParser) Line(b []byte) {
	var ev struct {
		Type     string `json:"type"`
		ThreadID string `json:"thread_id"`
		Item     *struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"item"`
		Usage *struct {
			InputTokens           *int64 `json:"input_tokens"`
			CachedInputTokens     *int64 `json:"cached_input_tokens"`
			OutputTokens          *int64 `json:"output_tokens"`
			ReasoningOutputTokens *int64 `json:"reasoning_output_tokens"`
		} `json:"usage"`
	}
	if !jsonLine(b, &ev) {
		return
	}
	switch ev.Type {
	case "thread.started":
		if ev.ThreadID != "" {
			p.rep.SessionID = ev.ThreadID
		}
	case "item.completed":
		if ev.Item != nil && ev.Item.Type == "agent_message" {
			text := ev.Item.Text
			p.rep.Result = &text // the last agent message is the answer
		}
	case "turn.completed":
		if ev.Usage == nil {
			return
		}
		// Each turn.completed carries the total so far: the last one wins.
		p.total = &Usage{
			InputTokens: ev.Usage.InputTokens, CachedInputTokens: ev.Usage.CachedInputTokens,
			OutputTokens: ev.Usage.OutputTokens, ReasoningOutputTokens: ev.Usage.ReasoningOutputTokens,
		}
	}
}

func (p *codexParser) Report() Report {
	rep := p.rep
	if p.total != nil {
		rep.Usage, rep.Cumulative = p.total, true
	}
	return rep
}
