package store

import (
	"fmt"
	"regexp"
	"strings"
)

// The runtime catalogue: which model providers each agent CLI can serve.
// aod keeps no closed list of model ids, only their form and provider.
var runtimeProviders = map[string][]string{
	"claude":   {"anthropic"},
	"codex":    {"openai"},
	"gemini":   {"google"},
	"opencode": {"anthropic", "openai", "google"},
	"shell":    {"local"},
}

// RuntimeNames lists the runtimes in the order error messages show them.
var RuntimeNames = []string{"claude", "codex", "gemini", "opencode", "shell"}

// ProviderNames lists the model providers in error-message order.
var ProviderNames = []string{"anthropic", "google", "local", "openai"}

// providerRuntime is the runtime a provider-only request runs on.
var providerRuntime = map[string]string{
	"anthropic": "claude",
	"openai":    "codex",
	"google":    "gemini",
	"local":     "shell",
}

// ShellModel is the one model of the local provider: the prompt is a script.
const ShellModel = "local/shell"

// prefixes recognised (and stripped or rejected) in provider-era model names.
var modelPrefixes = map[string]bool{"anthropic": true, "openai": true, "google": true, "local": true, "kimi": true}

var modelRE = regexp.MustCompile(`^([a-z]+)/([A-Za-z0-9][A-Za-z0-9._:-]*)$`)

// Model is a resolved runtime + provider + canonical provider/model_id.
type Model struct {
	Runtime  string
	Provider string
	Model    string
}

// KnownRuntime reports whether name is in the catalogue.
func KnownRuntime(name string) bool { _, ok := runtimeProviders[name]; return ok }

// KnownProvider reports whether name is a model provider.
func KnownProvider(name string) bool { _, ok := providerRuntime[name]; return ok }

// ProviderForRuntime is the provider shown for a runtime when nothing else
// says (the first it serves).
func ProviderForRuntime(runtime string) string {
	if p := runtimeProviders[runtime]; len(p) > 0 {
		return p[0]
	}
	return runtime
}

// pyList renders names the way the original's messages do: ['a', 'b'].
func pyList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// UnknownRuntimeError is the 400 for a runtime outside the catalogue.
func UnknownRuntimeError(runtime string) error {
	return Errorf(BadRequest, "Unknown runtime: %s. Must be one of: %s", runtime, pyList(RuntimeNames))
}

// UnknownProviderError is the 422 for a provider outside the catalogue.
func UnknownProviderError(provider string) error {
	return Errorf(Invalid, "Unknown provider: %s. Must be one of: %s", provider, pyList(ProviderNames))
}

// ResolveModel checks a runtime/provider/model triple against the catalogue.
// With provider set (the newer API generation) the model may be bare or carry
// a matching provider prefix and runtime may be empty (derived from the
// provider). Without provider, model must be canonical provider/model_id and
// runtime must be set.
func ResolveModel(runtime, provider, model string) (Model, error) {
	runtime = strings.TrimSpace(runtime)
	if runtime != "" && !KnownRuntime(runtime) {
		return Model{}, UnknownRuntimeError(runtime)
	}
	if provider = strings.TrimSpace(provider); provider != "" {
		return resolveProviderModel(runtime, provider, model)
	}
	m := modelRE.FindStringSubmatch(model)
	if m == nil || !KnownProvider(m[1]) || (m[1] == "local" && model != ShellModel) {
		return Model{}, Errorf(Invalid, "Unknown model: %s", model)
	}
	if runtime == "" {
		runtime = providerRuntime[m[1]]
	}
	if !servesProvider(runtime, m[1]) {
		return Model{}, Errorf(Invalid, "Runtime %s cannot serve model %s: provider %s not in %s", runtime, model, m[1], pyList(runtimeProviders[runtime]))
	}
	return Model{Runtime: runtime, Provider: m[1], Model: model}, nil
}

func resolveProviderModel(runtime, provider, model string) (Model, error) {
	if !KnownProvider(provider) {
		return Model{}, UnknownProviderError(provider)
	}
	model = strings.TrimSpace(model)
	if model == "" {
		return Model{}, Errorf(Invalid, "Model must be a non-empty string")
	}
	if prefix, rest, ok := strings.Cut(model, "/"); ok && modelPrefixes[prefix] {
		if prefix != provider {
			return Model{}, Errorf(Invalid, "Model provider prefix '%s' does not match provider '%s'", prefix, provider)
		}
		if model = strings.TrimSpace(rest); model == "" {
			return Model{}, Errorf(Invalid, "Model must be a non-empty string")
		}
	}
	canonical := provider + "/" + model
	if !modelRE.MatchString(canonical) || (provider == "local" && canonical != ShellModel) {
		return Model{}, Errorf(Invalid, "Unknown model: %s", canonical)
	}
	if runtime == "" {
		runtime = providerRuntime[provider]
	}
	if !servesProvider(runtime, provider) {
		return Model{}, Errorf(Invalid, "Runtime %s cannot serve model %s: provider %s not in %s", runtime, canonical, provider, pyList(runtimeProviders[runtime]))
	}
	return Model{Runtime: runtime, Provider: provider, Model: canonical}, nil
}

func servesProvider(runtime, provider string) bool {
	for _, p := range runtimeProviders[runtime] {
		if p == provider {
			return true
		}
	}
	return false
}

// String renders the model for logs.
func (m Model) String() string { return fmt.Sprintf("%s via %s", m.Model, m.Runtime) }
