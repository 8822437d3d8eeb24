// Package catalogue is aod's one table of what it knows about each agent
// runtime: the model providers it serves, the environment variables that
// carry its model key, the npm package its CLI ships in, model suggestions
// and the adapter that drives it. store (validation and the credential
// check), runner (install and adapters), server and ui all read this table;
// nothing else restates it. It imports nothing of aod's.
package catalogue

import "slices"

// Package is an agent CLI as npm ships it.
type Package struct {
	Name    string // npm package name
	Version string // exact version: installs are cached by it
	Bin     string // the command it installs into node_modules/.bin
}

// Runtime is one agent CLI aod can run.
type Runtime struct {
	Name string
	// Providers are the model providers it serves, the default first.
	Providers []string
	// Credentials lists, per provider, the env vars any one of which gives
	// the CLI a model key. A provider without an entry needs no key.
	Credentials map[string][]string
	// Package is the CLI's npm package, nil when nothing is installed
	// (shell runs bash from the system).
	Package *Package
	// Models are suggestions for forms (canonical provider/model_id); any
	// model of a provider the runtime serves is accepted.
	Models []string
	// Adapter names the runner's adapter for this CLI.
	Adapter string
	// CachedInInput says the CLI's input token count includes the input
	// read from the prompt cache (codex, gemini); otherwise it counts it
	// apart (claude, opencode).
	CachedInInput bool
}

// ShellModel is the one model of the local provider: the prompt is a script.
const ShellModel = "local/shell"

// The pinned versions must run on the machine's Node: claude-code 2.1.197 is
// the newest that declares Node 20 (engines >=18; later ones want >=22);
// codex 0.169.0 (>=16), gemini-cli 0.61.0 (>=20) and opencode-ai 1.18.33 (a
// native binary, no engines) install and run on Node 20 (verified with npm
// 11 / Node 20.20).
var runtimes = []Runtime{
	{
		Name:      "claude",
		Providers: []string{"anthropic"},
		// ANTHROPIC_AUTH_TOKEN is sent as a bearer token (gateways, proxies).
		Credentials: map[string][]string{"anthropic": {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"}},
		Package:     &Package{Name: "@anthropic-ai/claude-code", Version: "2.1.197", Bin: "claude"},
		Models:      []string{"anthropic/claude-sonnet-4-6", "anthropic/claude-opus-4-6", "anthropic/claude-haiku-4-5"},
		Adapter:     "claude",
	},
	{
		Name:          "codex",
		Providers:     []string{"openai"},
		Credentials:   map[string][]string{"openai": {"OPENAI_API_KEY"}},
		Package:       &Package{Name: "@openai/codex", Version: "0.169.0", Bin: "codex"},
		Models:        []string{"openai/gpt-5", "openai/gpt-5-codex", "openai/gpt-5-mini"},
		Adapter:       "codex",
		CachedInInput: true,
	},
	{
		Name:          "gemini",
		Providers:     []string{"google"},
		Credentials:   map[string][]string{"google": {"GEMINI_API_KEY"}},
		Package:       &Package{Name: "@google/gemini-cli", Version: "0.61.0", Bin: "gemini"},
		Models:        []string{"google/gemini-2.5-pro", "google/gemini-2.5-flash"},
		Adapter:       "gemini",
		CachedInInput: true,
	},
	{
		Name:      "opencode",
		Providers: []string{"anthropic", "openai", "google"},
		Credentials: map[string][]string{
			"anthropic": {"ANTHROPIC_API_KEY"},
			"openai":    {"OPENAI_API_KEY"},
			// opencode reads GOOGLE_GENERATIVE_AI_API_KEY; aod's name for a
			// Google key is GEMINI_API_KEY and the adapter passes it on.
			"google": {"GEMINI_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY"},
		},
		Package: &Package{Name: "opencode-ai", Version: "1.18.33", Bin: "opencode"},
		Models:  []string{"anthropic/claude-sonnet-4-6", "openai/gpt-5", "openai/o4-mini", "google/gemini-2.5-pro"},
		Adapter: "opencode",
	},
	{
		Name:      "shell",
		Providers: []string{"local"},
		Models:    []string{ShellModel},
		Adapter:   "shell",
	},
}

// providers maps each model provider to the runtime a provider-only request
// (the newer API generation: provider and a bare model) runs on.
var providers = map[string]string{
	"anthropic": "claude",
	"openai":    "codex",
	"google":    "gemini",
	"local":     "shell",
}

// apiHosts are the model API host each provider's CLIs talk to unless an
// endpoint is configured: a sprite with limited networking may always
// reach its runtime's.
var apiHosts = map[string]string{
	"anthropic": "api.anthropic.com",
	"openai":    "api.openai.com",
	"google":    "generativelanguage.googleapis.com",
}

// APIHost is the model API host of provider, "" for one with none (local).
func APIHost(provider string) string { return apiHosts[provider] }

// ModelPrefixes are the provider prefixes recognised in model names; kimi
// is one the original knew and aod refuses as not matching any provider.
var ModelPrefixes = []string{"anthropic", "google", "kimi", "local", "openai"}

// Runtimes lists every runtime in the order error messages show them
// (alphabetical).
func Runtimes() []Runtime { return slices.Clone(runtimes) }

// RuntimeNames lists the runtime names in error-message order.
func RuntimeNames() []string {
	out := make([]string, len(runtimes))
	for i, r := range runtimes {
		out[i] = r.Name
	}
	return out
}

// AgentRuntimes are the runtimes that run a real agent CLI (not shell).
func AgentRuntimes() []string {
	var out []string
	for _, r := range runtimes {
		if r.Package != nil {
			out = append(out, r.Name)
		}
	}
	return out
}

// ProviderNames lists the model providers in error-message order
// (alphabetical).
func ProviderNames() []string {
	out := make([]string, 0, len(providers))
	for p := range providers {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Lookup returns the runtime called name.
func Lookup(name string) (Runtime, bool) {
	for _, r := range runtimes {
		if r.Name == name {
			return r, true
		}
	}
	return Runtime{}, false
}

// KnownProvider reports whether name is a model provider.
func KnownProvider(name string) bool { _, ok := providers[name]; return ok }

// RuntimeForProvider is the runtime a provider-only request runs on.
func RuntimeForProvider(provider string) string { return providers[provider] }

// Serves reports whether the runtime can serve models of the provider.
func (r Runtime) Serves(provider string) bool { return slices.Contains(r.Providers, provider) }

// CredentialNames are the env vars that can carry a model key for the
// runtime serving provider; empty means no key is needed.
func CredentialNames(runtime, provider string) []string {
	r, ok := Lookup(runtime)
	if !ok {
		return nil
	}
	return r.Credentials[provider]
}

// Models lists the suggestions of every runtime once, in table order.
func Models() []string {
	var out []string
	for _, r := range runtimes {
		for _, m := range r.Models {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}
