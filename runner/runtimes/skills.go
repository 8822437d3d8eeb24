package runtimes

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"

	"github.com/aod/aod/runner/sprite"
)

// Skill is one entry of an agent's skills: inline (name, description,
// content: the whole SKILL.md) or from GitHub (source "owner/repo",
// optional name of one skill in it).
type Skill struct {
	Type        string `json:"type"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Content     string `json:"content"`
	Source      string `json:"source"`
}

// GitHub reports whether the skill comes from a GitHub repository (the
// skills.sh CLI installs it) rather than inline.
func (s Skill) GitHub() bool { return s.Type == "github" || s.Source != "" }

// ParseSkills reads an agent's skills.
func ParseSkills(raw json.RawMessage) ([]Skill, error) {
	var out []Skill
	if len(raw) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("the agent's skills: %w", err)
	}
	return out, nil
}

// WriteInlineSkills writes the inline skills for the runtime as
// <root>/<name>/SKILL.md with the content exactly as given; GitHub ones
// are left to GitHubSkillArgv, which must run in the sprite.
func WriteInlineSkills(ctx context.Context, sp sprite.Sprite, rt Runtime, skills []Skill) error {
	root, _ := rt.Skills()
	if root == "" {
		return fmt.Errorf("runtime %s does not support skills", rt.Name())
	}
	for _, s := range skills {
		if s.GitHub() {
			continue
		}
		if s.Name == "" || s.Name != path.Base(s.Name) || strings.HasPrefix(s.Name, ".") {
			return fmt.Errorf("invalid skill name %q", s.Name)
		}
		if err := sp.WriteFile(ctx, path.Join(root, s.Name, "SKILL.md"), []byte(s.Content), 0o644); err != nil {
			return fmt.Errorf("skill %s: %w", s.Name, err)
		}
	}
	return nil
}

// SkillsPackage is the npm package of the skills.sh installer; npx fetches
// it at its latest version like the original does.
const SkillsPackage = "skills"

const skillsCLI = SkillsPackage + "@latest"

// GitHubSkillArgv is the command that installs a GitHub skill for the
// skills.sh agent id (see Runtime.Skills); it needs npm and GitHub.
func GitHubSkillArgv(s Skill, agent string) []string {
	argv := []string{"npx", "-y", skillsCLI, "add", s.Source, "--global", "--agent", agent, "--yes"}
	if s.Name != "" {
		argv = append(argv, "--skill", s.Name)
	}
	return argv
}
