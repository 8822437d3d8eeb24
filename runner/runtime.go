package runner

import (
	"context"
	"fmt"

	"github.com/aod/aod/store"
)

// Runtime adapts one agent CLI: how it gets into the sprite, how a turn
// invokes it and what it needs in its environment and config files. Every
// turn runs Argv with cwd HomeDir and the prompt on stdin.
type Runtime interface {
	Name() string
	// Install makes the CLI available in the sprite (install_runtime).
	Install(ctx context.Context, sp Sprite) error
	// Argv is the command of a turn; turn 1 starts the conversation, later
	// turns resume it (using s.RuntimeSessionID where the CLI has one).
	Argv(s *store.Session, turn int) []string
	// Env adds the runtime's own variables; the environment's env vars and
	// the session's secrets are applied after them and win.
	Env(s *store.Session) map[string]string
	// Configure writes the CLI's config files (runtime_config).
	Configure(ctx context.Context, sp Sprite, s *store.Session) error
}

// shellRuntime runs the prompt as a bash script: no model, so every
// session feature can be exercised offline.
type shellRuntime struct{}

func (shellRuntime) Name() string                                            { return "shell" }
func (shellRuntime) Install(context.Context, Sprite) error                   { return nil }
func (shellRuntime) Env(*store.Session) map[string]string                    { return nil }
func (shellRuntime) Configure(context.Context, Sprite, *store.Session) error { return nil }

// Argv reads the script from stdin; --noprofile --norc keep login-shell
// noise out of the output, which must be exactly what the script wrote.
func (shellRuntime) Argv(*store.Session, int) []string {
	return []string{"bash", "--noprofile", "--norc", "-s"}
}

// unavailableRuntime stands in for an agent CLI this build cannot run yet:
// it fails install_runtime with a clear message.
type unavailableRuntime struct{ name string }

func (u unavailableRuntime) Name() string { return u.name }
func (u unavailableRuntime) Install(context.Context, Sprite) error {
	return stageError(fmt.Sprintf("Runtime %s is not available yet: this aod build runs only the shell runtime", u.name))
}
func (unavailableRuntime) Argv(*store.Session, int) []string                       { return nil }
func (unavailableRuntime) Env(*store.Session) map[string]string                    { return nil }
func (unavailableRuntime) Configure(context.Context, Sprite, *store.Session) error { return nil }

// runtimeFor returns the adapter of a session's runtime.
func runtimeFor(name string) Runtime {
	if name == "shell" {
		return shellRuntime{}
	}
	return unavailableRuntime{name: name}
}
