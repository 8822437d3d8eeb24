package runner

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
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

// addGitHubSkill runs the skills.sh CLI for one skill. When it fails, the
// error says why as far as aod can tell (npx missing, a connection its
// egress proxy refused, a Node.js too old for the CLI), then shows the
// end of the command's output.
func (r *Runner) addGitHubSkill(ctx context.Context, sp sprite.Sprite, s runtimes.Skill, agent string, env map[string]string) error {
	label := s.Source
	if s.Name != "" {
		label += " (" + s.Name + ")"
	}
	argv := runtimes.GitHubSkillArgv(s, agent)
	// npm's warnings come first and its errors last: keep both ends.
	out := &cmdout.Bounded{Head: 8 << 10, Tail: 8 << 10}
	start := time.Now()
	proc, err := sp.Start(ctx, sprite.ExecRequest{
		Argv: argv, Dir: sprite.HomeDir, Env: envList(env), Stdout: out, Stderr: out,
	})
	if err != nil {
		if ctx.Err() == nil && !r.hasCommand(ctx, sp, env, argv[0]) {
			return fmt.Errorf("skill %s from GitHub: %s", label, npxMissing)
		}
		return fmt.Errorf("skill %s from GitHub: %w", label, err)
	}
	st, _, err := r.supervise(ctx, proc, 5*time.Minute, nil, nil)
	switch {
	case err != nil:
		return fmt.Errorf("skill %s from GitHub: %w", label, err)
	case ctx.Err() != nil:
		return ctx.Err()
	case st.Code != 0:
		msg := fmt.Sprintf("skill %s from GitHub: `%s` exited %d", label, strings.Join(argv, " "), st.Code)
		if cause := r.skillFailureCause(ctx, sp, env, st.Code, out, start); cause != "" {
			msg += ": " + cause
		}
		head, tail, omitted := out.Text()
		if omitted == 0 {
			tail = head
		}
		return fmt.Errorf("%s\noutput:\n%s", msg, strings.TrimSpace(cmdout.LastRunes(tail, 2000)))
	}
	return nil
}

const npxMissing = "npx is not installed in the sprite: skills from GitHub are installed with `npx skills`, which needs Node.js and npm on the sprite's PATH"

// skillFailureCause says why the skills CLI failed when aod can tell, ""
// when it cannot (the command's output then speaks for itself).
func (r *Runner) skillFailureCause(ctx context.Context, sp sprite.Sprite, env map[string]string, code int, out *cmdout.Bounded, start time.Time) string {
	if code == 127 && !r.hasCommand(ctx, sp, env, "npx") {
		return npxMissing
	}
	if refused := r.refusedSince(ctx, sp.Name(), start); len(refused) > 0 {
		return "aod's egress proxy refused " + strings.Join(refused, ", ") +
			", which this session's network policy does not allow (the skills CLI comes from npm's registry, the skill from GitHub)"
	}
	head, tail, _ := out.Text()
	if pkg, required, current := npmEngineMismatch(head+"\n"+tail, runtimes.SkillsPackage); pkg != "" {
		return fmt.Sprintf("the skills CLI (%s) needs Node.js %s; the sprite has %s", pkg, required, current)
	}
	return ""
}

// hasCommand reports whether name is on the sprite's PATH. Only asked
// after a failure: it costs a command in the sprite. A sprite that cannot
// run the check counts as having it (nothing is known).
func (r *Runner) hasCommand(ctx context.Context, sp sprite.Sprite, env map[string]string, name string) bool {
	proc, err := sp.Start(ctx, sprite.ExecRequest{
		Argv: []string{"bash", "--noprofile", "--norc", "-c", `command -v "$1" >/dev/null`, "bash", name},
		Dir:  sprite.HomeDir, Env: envList(env),
	})
	if err != nil {
		return true
	}
	st, _, err := r.supervise(ctx, proc, 30*time.Second, nil, nil)
	return err != nil || st.Code != 1
}

// refusedSince lists what aod's egress proxy refused a sprite (host:port)
// since t, from the session's egress record (the proxy records under the
// sprite's name, its session's id).
func (r *Runner) refusedSince(ctx context.Context, name string, t time.Time) []string {
	r.egress.flush() // the latest records wait up to egressFlushDelay
	entries, err := r.db.ListEgress(context.WithoutCancel(ctx), "", name)
	if err != nil {
		return nil
	}
	t = t.Truncate(time.Microsecond) // as stored
	var out []string
	for _, e := range entries {
		if !e.Allowed && !e.LastAt.Before(t) {
			out = append(out, net.JoinHostPort(e.Host, strconv.Itoa(e.Port)))
		}
	}
	return out
}

var (
	engineHeadRE     = regexp.MustCompile(`(?i)\bEBADENGINE\b.*\bpackage: '([^']+)'`)
	engineRequiredRE = regexp.MustCompile(`(?i)\bEBADENGINE\b.*\brequired: \{[^}]*\bnode: '([^']+)'`)
	engineCurrentRE  = regexp.MustCompile(`(?i)\bEBADENGINE\b.*\bcurrent: \{[^}]*\bnode: '([^']+)'`)
)

// npmEngineMismatch reads npm's EBADENGINE warning about package (name
// without version) from its output: the package with its version, the
// Node.js versions it requires and the one running. "" when npm did not
// warn about it.
func npmEngineMismatch(output, name string) (pkg, required, current string) {
	in := false
	for _, line := range strings.Split(output, "\n") {
		if m := engineHeadRE.FindStringSubmatch(line); m != nil {
			in = strings.HasPrefix(m[1], name+"@")
			if in {
				pkg = m[1]
			}
			continue
		}
		if !in {
			continue
		}
		if m := engineRequiredRE.FindStringSubmatch(line); m != nil {
			required = m[1]
		}
		if m := engineCurrentRE.FindStringSubmatch(line); m != nil {
			current = m[1]
		}
	}
	if pkg == "" || required == "" || current == "" {
		return "", "", ""
	}
	return pkg, required, current
}
