// Package runtimes adapts each agent CLI aod runs (claude, codex, opencode,
// gemini, and the shell runtime): the argv and environment of a turn, the
// config files it reads (MCP servers, skills), what its output says about
// the conversation and its usage, and installing its npm package into a
// cache shared by every sprite. The facts about a runtime that other
// packages need too (providers, credential env vars, npm pins, adapter
// names) are in the catalogue, never restated here.
package runtimes

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// Runtime adapts one agent CLI: how a turn invokes it, what it needs in
// its environment and config files, where its skills go and what its
// output says about the conversation. Every turn runs Argv with cwd
// sprite.HomeDir, HOME=sprite.HomeDir and the prompt on stdin, so a CLI
// that keys its saved conversations by directory finds them again on later
// turns. The CLI itself is the catalogue's package (see Pin).
//
// Argv and Env are computed afresh for every turn from the runner's
// current settings; Configure runs once, at provisioning. So what may
// differ between server starts, the model endpoints above all (the fake
// model API's port changes at every start), reaches the CLI through Argv
// or Env on every turn: a value only in a config file would keep pointing
// where the server that provisioned the sprite pointed.
type Runtime interface {
	Name() string
	// Argv is the command of a turn; turn 1 starts the conversation, later
	// turns resume it by s.RuntimeSessionID (the CLI's own id).
	Argv(s *store.Session, turn int) []string
	// Env adds the runtime's variables to env, which already holds the
	// sprite's basics, the environment's env vars and the session's
	// secrets: static settings only where the user set nothing, model
	// endpoints always, a placeholder key only when an endpoint is set and
	// the session brought none.
	Env(s *store.Session, sp sprite.Sprite, env map[string]string)
	// Configure writes the CLI's config files (runtime_config): the MCP
	// servers and static settings, merged into what the file already
	// holds. An endpoint written there too is only a fallback for running
	// the CLI by hand: Argv/Env override it on every turn.
	Configure(ctx context.Context, sp sprite.Sprite, s *store.Session, mcp []MCPServer) error
	// Skills is where inline skills go (<root>/<name>/SKILL.md) and the
	// skills.sh agent id GitHub skills are installed for; "" when the
	// runtime has no skills.
	Skills() (root, agent string)
	// NewSessionID is the conversation id aod chooses at provisioning, ""
	// when the CLI chooses its own (then read from its output).
	NewSessionID() string
	// Parser reads one turn's stdout for the CLI's conversation id and
	// usage; nil when there is nothing to read.
	Parser() Parser
}

// Endpoints are base URLs of the model APIs, without the version path
// ("http://127.0.0.1:8778", not ".../v1"); empty means the real API.
// They must be reachable from inside a sprite: under bwrap the network is
// shared with the host, so the host's 127.0.0.1 works.
type Endpoints struct {
	Anthropic string // claude: ANTHROPIC_BASE_URL; opencode: provider anthropic
	OpenAI    string // codex: the "aod" model provider; opencode: provider openai
	Gemini    string // gemini: GOOGLE_GEMINI_BASE_URL; opencode: provider google
}

// Keyless reports whether the provider's CLIs talk to a configured
// endpoint: a session that brings no key then gets a placeholder one (see
// Runtime.Env; the fake model API takes any), so none is required.
func (e Endpoints) Keyless(provider string) bool { return e.For(provider) != "" }

// For is the endpoint configured for provider's CLIs, "" for none.
func (e Endpoints) For(provider string) string {
	switch provider {
	case "anthropic":
		return e.Anthropic
	case "openai":
		return e.OpenAI
	case "google":
		return e.Gemini
	}
	return ""
}

// adapters are the adapters by the catalogue's Adapter name.
var adapters = map[string]func(Endpoints) Runtime{
	"shell":    func(Endpoints) Runtime { return shellRuntime{} },
	"claude":   func(ep Endpoints) Runtime { return claudeRuntime{ep: ep} },
	"codex":    func(ep Endpoints) Runtime { return codexRuntime{ep: ep} },
	"opencode": func(ep Endpoints) Runtime { return opencodeRuntime{ep: ep} },
	"gemini":   func(ep Endpoints) Runtime { return geminiRuntime{ep: ep} },
}

// For returns the adapter of the catalogue runtime called name, talking to
// the endpoints ep; an Unavailable one for a name the catalogue or the
// adapters do not know.
func For(name string, ep Endpoints) Runtime {
	entry, ok := catalogue.Lookup(name)
	if !ok {
		return Unavailable{name: name}
	}
	mk, ok := adapters[entry.Adapter]
	if !ok {
		return Unavailable{name: name}
	}
	return mk(ep)
}

// shellRuntime runs the prompt as a bash script: no model, so every
// session feature can be exercised offline.
type shellRuntime struct{}

func (shellRuntime) Name() string                                         { return "shell" }
func (shellRuntime) Env(*store.Session, sprite.Sprite, map[string]string) {}
func (shellRuntime) Configure(context.Context, sprite.Sprite, *store.Session, []MCPServer) error {
	return nil
}
func (shellRuntime) Skills() (string, string) { return "", "" }
func (shellRuntime) NewSessionID() string     { return "" }
func (shellRuntime) Parser() Parser           { return nil }

// Argv reads the script from stdin; --noprofile --norc keep login-shell
// noise out of the output, which must be exactly what the script wrote.
func (shellRuntime) Argv(*store.Session, int) []string {
	return []string{"bash", "--noprofile", "--norc", "-s"}
}

// Unavailable stands in for a runtime name aod does not know (the store
// only accepts catalogue names): provisioning fails it at install_runtime.
type Unavailable struct{ name string }

func (u Unavailable) Name() string                                       { return u.name }
func (Unavailable) Argv(*store.Session, int) []string                    { return nil }
func (Unavailable) Env(*store.Session, sprite.Sprite, map[string]string) {}
func (Unavailable) Configure(context.Context, sprite.Sprite, *store.Session, []MCPServer) error {
	return nil
}
func (Unavailable) Skills() (string, string) { return "", "" }
func (Unavailable) NewSessionID() string     { return "" }
func (Unavailable) Parser() Parser           { return nil }

// placeholderKey is the credential injected when a model endpoint is
// configured and the session brings no key, so the CLI starts (aod's fake
// model API accepts any key).
const placeholderKey = "aod-fake-key"

// modelID is the session's model without its provider prefix
// ("anthropic/claude-sonnet-4-6" -> "claude-sonnet-4-6").
func modelID(s *store.Session) string {
	if prefix, rest, ok := strings.Cut(s.Model, "/"); ok && prefix == s.Provider {
		return rest
	}
	return s.Model
}

// setDefault sets env[k] unless the user set it.
func setDefault(env map[string]string, k, v string) {
	if _, ok := env[k]; !ok {
		env[k] = v
	}
}

// hasAny reports whether env holds a non-empty value for one of keys.
func hasAny(env map[string]string, keys ...string) bool {
	for _, k := range keys {
		if env[k] != "" {
			return true
		}
	}
	return false
}

// endpointRoot is an endpoint without trailing slashes and version path,
// so ".../v1" and "..." configure the same thing.
func endpointRoot(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	for _, suffix := range []string{"/v1beta", "/v1"} {
		u = strings.TrimSuffix(u, suffix)
	}
	return u
}

// newUUID returns a random UUID in version 4 form, the shape claude's
// --session-id and gemini's --session-id require.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
