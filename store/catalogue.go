package store

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aod/aod/catalogue"
)

// ShellModel is the one model of the local provider: the prompt is a script.
const ShellModel = catalogue.ShellModel

var modelRE = regexp.MustCompile(`^([a-z]+)/([A-Za-z0-9][A-Za-z0-9._:-]*)$`)

// Model is a resolved runtime + provider + canonical provider/model_id.
type Model struct {
	Runtime  string
	Provider string
	Model    string
}

// KnownRuntime reports whether name is in the catalogue.
func KnownRuntime(name string) bool { _, ok := catalogue.Lookup(name); return ok }

// KnownProvider reports whether name is a model provider.
func KnownProvider(name string) bool { return catalogue.KnownProvider(name) }

// UnknownRuntimeError is the 400 for a runtime outside the catalogue.
func UnknownRuntimeError(runtime string) error {
	return Errorf(BadRequest, "Unknown runtime: %s. Must be one of: %s", runtime, PyList(catalogue.RuntimeNames()))
}

// UnknownProviderError is the 422 for a provider outside the catalogue.
func UnknownProviderError(provider string) error {
	return Errorf(Invalid, "Unknown provider: %s. Must be one of: %s", provider, PyList(catalogue.ProviderNames()))
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
		runtime = catalogue.RuntimeForProvider(m[1])
	}
	if !servesProvider(runtime, m[1]) {
		return Model{}, Errorf(Invalid, "Runtime %s cannot serve model %s: provider %s not in %s", runtime, model, m[1], PyList(providersOf(runtime)))
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
	if prefix, rest, ok := strings.Cut(model, "/"); ok && slices.Contains(catalogue.ModelPrefixes, prefix) {
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
		runtime = catalogue.RuntimeForProvider(provider)
	}
	if !servesProvider(runtime, provider) {
		return Model{}, Errorf(Invalid, "Runtime %s cannot serve model %s: provider %s not in %s", runtime, canonical, provider, PyList(providersOf(runtime)))
	}
	return Model{Runtime: runtime, Provider: provider, Model: canonical}, nil
}

func servesProvider(runtime, provider string) bool {
	rt, ok := catalogue.Lookup(runtime)
	return ok && rt.Serves(provider)
}

func providersOf(runtime string) []string {
	rt, _ := catalogue.Lookup(runtime)
	return rt.Providers
}

// String renders the model for logs.
func (m Model) String() string { return fmt.Sprintf("%s via %s", m.Model, m.Runtime) }
