package runtimes

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// opencodeRuntime runs opencode (opencode-ai), which serves the
// anthropic, openai and google providers.
//
// Verified against 1.18.33 (`opencode run --help`, and real turns in a
// bwrap sprite with the install mounted read-only, against a local fake
// of POST /v1/messages, /v1/responses and
// /v1beta/models/<m>:streamGenerateContent):
//   - `opencode run --model <provider/model> --format json --auto` reads
//     the prompt from stdin and prints one JSON event per line: {type,
//     timestamp, sessionID, part} with type step_start, text, tool_use,
//     step_finish (part.tokens {input, output, reasoning, cache {read,
//     write}}, part.cost), error; --auto approves permission requests
//     nobody could answer;
//   - `--session <sessionID>` continues that session (the next request
//     carried the earlier turn's messages);
//   - OPENCODE_CONFIG_CONTENT (inline JSON config) wins over
//     opencode.json: its provider baseURL is the one called;
//   - provider.<id>.options.baseURL in ~/.config/opencode/opencode.json
//     moves a built-in provider (anthropic: <root>/v1, openai: <root>/v1,
//     google: <root>/v1beta); keys come from ANTHROPIC_API_KEY,
//     OPENAI_API_KEY and GOOGLE_GENERATIVE_AI_API_KEY (not
//     GEMINI_API_KEY: "Google Generative AI API key is missing");
//   - mcp entries (remote/local) are contacted at start; skills in
//     ~/.config/opencode/skills/<name>/SKILL.md reach the model's prompt.
type opencodeRuntime struct{ ep Endpoints }

const opencodeConfig = sprite.HomeDir + "/.config/opencode/opencode.json"

func (opencodeRuntime) Name() string { return "opencode" }

func (opencodeRuntime) Argv(s *store.Session, turn int) []string {
	argv := []string{"opencode", "run", "--model", s.Model, "--format", "json", "--auto"}
	switch {
	case turn <= 1:
		return argv
	case s.RuntimeSessionID != "":
		return append(argv, "--session", s.RuntimeSessionID)
	default:
		return append(argv, "--continue")
	}
}

// opencodeProvider describes one model provider opencode serves.
type opencodeProvider struct {
	keyVar  string // the variable opencode reads the key from
	version string // the API version path under the endpoint root
}

var opencodeProviders = map[string]opencodeProvider{
	"anthropic": {keyVar: "ANTHROPIC_API_KEY", version: "/v1"},
	"openai":    {keyVar: "OPENAI_API_KEY", version: "/v1"},
	"google":    {keyVar: "GOOGLE_GENERATIVE_AI_API_KEY", version: "/v1beta"},
}

// endpoint is the configured endpoint root for a provider, "" for none.
func (o opencodeRuntime) endpoint(provider string) string {
	switch provider {
	case "anthropic":
		return o.ep.Anthropic
	case "openai":
		return o.ep.OpenAI
	case "google":
		return o.ep.Gemini
	}
	return ""
}

// Env passes the configured endpoints on every turn in
// OPENCODE_CONFIG_CONTENT (inline config, which opencode merges over
// opencode.json): opencode.json is written once, at provisioning, and a
// server started later may talk to other endpoints. A config the user
// set there is kept, the endpoints merged in.
func (o opencodeRuntime) Env(s *store.Session, sp sprite.Sprite, env map[string]string) {
	setDefault(env, "OPENCODE_DISABLE_AUTOUPDATE", "1") // the install is pinned and read-only
	if baseURLs := o.baseURLs(); len(baseURLs) > 0 {
		inline := map[string]json.RawMessage{}
		if json.Unmarshal([]byte(env["OPENCODE_CONFIG_CONTENT"]), &inline) != nil || inline == nil {
			inline = map[string]json.RawMessage{} // none, or not an object opencode could read anyway
		}
		if setBaseURLs(inline, baseURLs) == nil {
			if b, err := marshalCompact(inline); err == nil {
				env["OPENCODE_CONFIG_CONTENT"] = string(b)
			}
		}
	}
	p, ok := opencodeProviders[s.Provider]
	if !ok {
		return
	}
	if p.keyVar == "GOOGLE_GENERATIVE_AI_API_KEY" && env[p.keyVar] == "" && env["GEMINI_API_KEY"] != "" {
		env[p.keyVar] = env["GEMINI_API_KEY"] // aod's credential for google is GEMINI_API_KEY
	}
	if o.endpoint(s.Provider) != "" {
		// Offline runs: the bundled model list, no fetch of models.dev.
		setDefault(env, "OPENCODE_DISABLE_MODELS_FETCH", "1")
		if !hasAny(env, p.keyVar) {
			env[p.keyVar] = placeholderKey
		}
	}
}

// baseURLs are the providers' baseURL options for the configured
// endpoints, by provider id.
func (o opencodeRuntime) baseURLs() map[string]string {
	out := map[string]string{}
	for _, id := range []string{"anthropic", "openai", "google"} {
		if ep := o.endpoint(id); ep != "" {
			out[id] = endpointRoot(ep) + opencodeProviders[id].version
		}
	}
	return out
}

// setBaseURLs sets provider.<id>.options.baseURL in an opencode config,
// keeping the other options.
func setBaseURLs(top map[string]json.RawMessage, baseURLs map[string]string) error {
	for _, id := range store.SortedKeys(baseURLs) {
		if err := setPath(top, baseURLs[id], true, "provider", id, "options", "baseURL"); err != nil {
			return err
		}
	}
	return nil
}

// Configure merges the endpoints and MCP servers into opencode.json. The
// endpoints there are a fallback for running opencode by hand; turns pass
// the current ones (see Env).
func (o opencodeRuntime) Configure(ctx context.Context, sp sprite.Sprite, s *store.Session, mcp []MCPServer) error {
	baseURLs := o.baseURLs()
	if len(mcp) == 0 && len(baseURLs) == 0 {
		return nil
	}
	servers := map[string]any{}
	for _, m := range mcp {
		switch m.Type {
		case "url":
			e := map[string]any{"type": "remote", "url": m.URL, "enabled": true}
			if len(m.Headers) > 0 {
				e["headers"] = opencodeEnvRefs(m.Headers)
			}
			servers[m.Name] = e
		case "stdio":
			e := map[string]any{"type": "local", "command": append([]string{m.Command}, m.Args...), "enabled": true}
			if len(m.Env) > 0 {
				e["environment"] = opencodeEnvRefs(m.Env)
			}
			servers[m.Name] = e
		}
	}
	return mergeJSONFile(ctx, sp, opencodeConfig, 0o644, func(top map[string]json.RawMessage) error {
		if err := setBaseURLs(top, baseURLs); err != nil {
			return err
		}
		if len(servers) == 0 {
			return nil
		}
		return mergeObject(top, "mcp", servers)
	})
}

// opencodeEnvRefs rewrites ${VAR} (the API's form, expanded by claude)
// to opencode's {env:VAR}.
func opencodeEnvRefs(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = envRefs.ReplaceAllString(v, "{env:$1}")
	}
	return out
}

func (opencodeRuntime) Skills() (string, string) {
	return sprite.HomeDir + "/.config/opencode/skills", "opencode"
}
func (opencodeRuntime) NewSessionID() string { return "" }
func (opencodeRuntime) Parser() Parser       { return &opencodeParser{} }

// opencodeParser reads run --format json events: the sessionID every
// event carries, the last message's text, and each step_finish's tokens
// and cost, summed.
type opencodeParser struct {
	rep     Report
	message string // the message the text so far belongs to
	text    strings.Builder
}

func (p *opencodeParser) Line(b []byte) {
	var ev struct {
		Type      string `json:"type"`
		SessionID string `json:"sessionID"`
		Part      *struct {
			MessageID string   `json:"messageID"`
			Text      string   `json:"text"`
			Cost      *float64 `json:"cost"`
			Tokens    *struct {
				Input     *int64 `json:"input"`
				Output    *int64 `json:"output"`
				Reasoning *int64 `json:"reasoning"`
				Cache     *struct {
					Read  *int64 `json:"read"`
					Write *int64 `json:"write"`
				} `json:"cache"`
			} `json:"tokens"`
		} `json:"part"`
	}
	if !jsonLine(b, &ev) {
		return
	}
	if ev.SessionID != "" {
		p.rep.SessionID = ev.SessionID
	}
	if ev.Type == "text" && ev.Part != nil {
		// The answer is the text of the last message that had any.
		if ev.Part.MessageID != p.message {
			p.message = ev.Part.MessageID
			p.text.Reset()
		}
		p.text.WriteString(ev.Part.Text)
		text := p.text.String()
		p.rep.Result = &text
		return
	}
	if ev.Type != "step_finish" || ev.Part == nil {
		return
	}
	u := &Usage{CostUSD: ev.Part.Cost}
	if t := ev.Part.Tokens; t != nil {
		u.InputTokens, u.OutputTokens, u.ReasoningOutputTokens = t.Input, t.Output, t.Reasoning
		if t.Cache != nil {
			u.CachedInputTokens, u.CacheCreationInputTokens = t.Cache.Read, t.Cache.Write
		}
	}
	if p.rep.Usage == nil {
		p.rep.Usage = &Usage{}
	}
	p.rep.Usage.Add(u)
}

func (p *opencodeParser) Report() Report { return p.rep }
