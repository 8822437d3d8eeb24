package runtimes

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// The adapters write config files and skills into a sprite after its
// setup script ran, i.e. into a tree a hostile script prepared. Through the
// local backend, a symlink planted where they write makes the stage fail and
// the host file or directory it points at stays untouched, for every
// runtime's config and skill paths.
func TestAdaptersNeverWriteThroughPlantedLinks(t *testing.T) {
	ep := Endpoints{Anthropic: "http://127.0.0.1:1", OpenAI: "http://127.0.0.1:1", Gemini: "http://127.0.0.1:1"}
	mcp := []MCPServer{{Name: "docs", Type: "stdio", Command: "true"}}
	skills := []Skill{{Name: "pwn", Description: "d", Content: "pwned"}}
	for name, sess := range agentSessions {
		rt := For(name, ep)
		root, _ := rt.Skills()
		for what, planted := range map[string]string{
			"config": configDir(t, name),
			"skills": filepath.Join(root, "pwn"),
		} {
			t.Run(name+" "+what, func(t *testing.T) {
				is := is.New(t)
				b, err := local.New(local.Config{DataDir: t.TempDir(), Sandbox: local.SandboxNone})
				is.NoErr(err) // a local backend
				sp, err := b.Create(context.Background(), "s", sprite.Options{})
				is.NoErr(err) // and a sprite
				outside := t.TempDir()
				link := sp.Path(planted)
				is.NoErr(os.MkdirAll(filepath.Dir(link), 0o700))
				is.NoErr(os.Symlink(outside, link)) // the setup script's link
				s := *sess
				if what == "config" {
					err = rt.Configure(context.Background(), sp, &s, mcp)
				} else {
					err = WriteInlineSkills(context.Background(), sp, rt, skills)
				}
				is.True(err != nil) // the stage fails
				entries, err := os.ReadDir(outside)
				is.NoErr(err)
				is.Equal(len(entries), 0) // and nothing was written to the host directory
			})
		}
	}
}

// configDir is where a link makes the runtime's config write go astray:
// the config file's directory, or the file itself.
func configDir(t *testing.T, name string) string {
	switch name {
	case "claude":
		return claudeConfig // the link stands in for the file itself
	case "codex":
		return codexHome
	case "opencode":
		return filepath.Dir(opencodeConfig)
	case "gemini":
		return filepath.Dir(geminiSettings)
	}
	t.Fatalf("no config path for %s", name)
	return ""
}
