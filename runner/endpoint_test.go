package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// fakeCLIs puts a stand-in for every agent CLI into the runtime cache dir,
// where install_runtime finds it installed: it prints its argv and the
// endpoint settings of its environment, one per line, and exits 0.
func fakeCLIs(t *testing.T, dir string) {
	t.Helper()
	inst := runtimes.NewInstaller(dir, "", nil)
	script := "#!/bin/sh\ncat >/dev/null\nfor a in \"$@\"; do printf 'arg %s\\n' \"$a\"; done\n" +
		"env | grep -E '^(ANTHROPIC_BASE_URL|GOOGLE_GEMINI_BASE_URL|OPENCODE_CONFIG_CONTENT)=' | sed 's/^/env /'\n"
	for _, name := range catalogue.AgentRuntimes() {
		pkg := runtimes.Pin(runtimes.For(name, ModelEndpoints{}), nil)
		bin := filepath.Join(inst.Path(*pkg), "node_modules", ".bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, pkg.Bin), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// effectiveEndpoint is the model endpoint the real CLI would call, from
// what its stand-in printed (argv, env) and the config files in the
// sprite's home, by each CLI's own precedence (checked with the real
// ones): claude and gemini take theirs from the environment; codex's
// `-c model_providers.aod.base_url=…` beats $CODEX_HOME/config.toml;
// opencode's OPENCODE_CONFIG_CONTENT beats ~/.config/opencode/opencode.json.
func effectiveEndpoint(t *testing.T, runtime, provider, out, home string) string {
	t.Helper()
	var args []string
	env := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if a, ok := strings.CutPrefix(line, "arg "); ok {
			args = append(args, a)
		} else if kv, ok := strings.CutPrefix(line, "env "); ok {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	switch runtime {
	case "claude":
		return env["ANTHROPIC_BASE_URL"]
	case "gemini":
		return env["GOOGLE_GEMINI_BASE_URL"]
	case "codex":
		url := ""
		for i := 0; i+1 < len(args); i++ {
			if v, ok := strings.CutPrefix(args[i+1], "model_providers.aod.base_url="); ok && (args[i] == "-c" || args[i] == "--config") {
				if url, ok = unquote(v); !ok {
					t.Fatalf("codex -c value %s is not a TOML string", v)
				}
			}
		}
		if url != "" {
			return url
		}
		toml, err := os.ReadFile(filepath.Join(home, ".codex", "config.toml"))
		if err != nil {
			t.Fatalf("codex config: %v", err)
		}
		m := regexp.MustCompile(`(?m)^base_url = (".*")$`).FindSubmatch(toml)
		if m == nil {
			return ""
		}
		url, _ = unquote(string(m[1]))
		return url
	case "opencode":
		baseURL := func(doc []byte) string {
			var cfg struct {
				Provider map[string]struct {
					Options struct {
						BaseURL string `json:"baseURL"`
					} `json:"options"`
				} `json:"provider"`
			}
			if err := json.Unmarshal(doc, &cfg); err != nil {
				t.Fatalf("opencode config %s: %v", doc, err)
			}
			return cfg.Provider[provider].Options.BaseURL
		}
		if inline, ok := env["OPENCODE_CONFIG_CONTENT"]; ok {
			if url := baseURL([]byte(inline)); url != "" {
				return url
			}
		}
		doc, err := os.ReadFile(filepath.Join(home, ".config", "opencode", "opencode.json"))
		if err != nil {
			t.Fatalf("opencode config: %v", err)
		}
		return baseURL(doc)
	}
	t.Fatalf("no endpoint rule for %s", runtime)
	return ""
}

func unquote(s string) (string, bool) {
	u, err := strconv.Unquote(s)
	return u, err == nil
}

// A session provisioned by a server talking to one model endpoint has its
// later turns run by a server talking to another (a restart with
// --fake-model moves the fake's port): each turn must reach the endpoint
// configured now, not the one written into the CLI's config at
// provisioning.
func TestLaterTurnUsesTheCurrentEndpoint(t *testing.T) {
	f := newStore(t)
	cache := t.TempDir()
	fakeCLIs(t, cache)
	const rootBefore, rootNow = "http://127.0.0.1:1111", "http://127.0.0.1:2222"
	before := ModelEndpoints{Anthropic: rootBefore, OpenAI: rootBefore, Gemini: rootBefore}
	now := ModelEndpoints{Anthropic: rootNow, OpenAI: rootNow + "/v1", Gemini: rootNow}
	// want is the URL a CLI calls when every endpoint has root.
	want := func(root, runtime string) string {
		if runtime == "codex" || runtime == "opencode" { // both through the OpenAI provider here
			return root + "/v1"
		}
		return root
	}
	f.start(Config{RuntimeDir: cache, ModelEndpoints: before})
	sessions := map[string]*store.Session{}
	for _, name := range catalogue.AgentRuntimes() {
		sessions[name] = f.run("hello", sessionOpts{runtime: name})
	}
	for _, name := range catalogue.AgentRuntimes() {
		t.Run(name+"/turn 1", func(t *testing.T) {
			is := is.New(t)
			s := sessions[name]
			done := f.wait(s.ID)
			is.Equal(done.Status, store.StatusCompleted) // provisioned and ran turn 1 (see done.Error)
			out, _ := f.output(s.ID, 1)
			home := filepath.Join(f.spriteDir(s.ID), "home")
			is.Equal(effectiveEndpoint(t, name, s.Provider, out, home), want(rootBefore, name)) // turn 1 reaches the endpoint of its server
		})
	}

	// A restart: the same data dir and sprites, another endpoint.
	is.New(t).NoErr(f.r.Shutdown(f.ctx, 0)) // the first server stops
	f.start(Config{RuntimeDir: cache, ModelEndpoints: now})
	for _, name := range catalogue.AgentRuntimes() {
		t.Run(name+"/turn 2", func(t *testing.T) {
			is := is.New(t)
			s := sessions[name]
			_, err := f.db.PromptSession(context.Background(), f.user.ID, s.ID, "again", 60)
			is.NoErr(err) // queue turn 2
			f.r.Enqueue(s.ID)
			done := f.wait(s.ID)
			is.Equal(done.Status, store.StatusCompleted) // turn 2 ran (see done.Error)
			out, _ := f.output(s.ID, 2)
			home := filepath.Join(f.spriteDir(s.ID), "home")
			is.Equal(effectiveEndpoint(t, name, s.Provider, out, home), want(rootNow, name)) // turn 2 reaches the endpoint configured now, not the provisioning server's
		})
	}
}
