package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/runner/sprite"
)

// writeSkills installs an agent's skills for the runtime: inline ones as
// files where the CLI reads them, GitHub ones with the skills.sh CLI run
// in the sprite (it needs the network: npm and GitHub). env is the sprite
// processes' environment.
func (r *Runner) writeSkills(ctx context.Context, sp sprite.Sprite, rt runtimes.Runtime, skills []runtimes.Skill, env map[string]string) error {
	if err := runtimes.WriteInlineSkills(ctx, sp, rt, skills); err != nil {
		return err
	}
	_, agent := rt.Skills()
	for _, s := range skills {
		if !s.GitHub() {
			continue
		}
		if err := r.addGitHubSkill(ctx, sp, s, agent, env); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) addGitHubSkill(ctx context.Context, sp sprite.Sprite, s runtimes.Skill, agent string, env map[string]string) error {
	label := s.Source
	if s.Name != "" {
		label += " (" + s.Name + ")"
	}
	argv := runtimes.GitHubSkillArgv(s, agent)
	out := &cmdout.Tail{Max: 8 << 10}
	proc, err := sp.Start(ctx, sprite.ExecRequest{
		Argv: argv, Dir: sprite.HomeDir, Env: envList(env), Stdout: out, Stderr: out,
	})
	if err != nil {
		return fmt.Errorf("skill %s from GitHub: %w", label, err)
	}
	st, _, err := r.supervise(ctx, proc, 5*time.Minute, nil)
	switch {
	case err != nil:
		return fmt.Errorf("skill %s from GitHub: %w", label, err)
	case ctx.Err() != nil:
		return ctx.Err()
	case st.Code != 0:
		return fmt.Errorf("skill %s from GitHub: `%s` exited %d (it needs network access to npm and GitHub)\noutput:\n%s",
			label, strings.Join(argv, " "), st.Code, strings.TrimSpace(out.Last(2000)))
	}
	return nil
}
