package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/runner/sprite"

	"github.com/aod/aod/store"
)

// stageError is a failure whose text is the stage's message as it stands.
type stageError string

func (e stageError) Error() string { return string(e) }

// Stage names, in the order provisioning runs them (spec/runner.md §2).
const (
	stageCreateSprite   = "create_sprite"
	stageInstallRuntime = "install_runtime"
	stageNetworkPolicy  = "network_policy"
	stageEnvFile        = "env_file"
	stageGitCredentials = "git_credentials"
	stageProvisionSetup = "provision_setup"
	stageRuntimeConfig  = "runtime_config"
	stageSkills         = "skills"
	stageRuntimeStart   = "runtime_start"
)

const limitedNetworkingMessage = "Limited networking cannot be enforced by this aod build; refusing to run the session unrestricted"

// provisioning is one run of the stages for a session.
type provisioning struct {
	r      *Runner
	ctx    context.Context // cancelled by terminate, shutdown or the provisioning deadline
	jobCtx context.Context
	sess   *store.Session
	rt     runtimes.Runtime
}

// provision prepares a session's sprite. On failure the session is
// recorded failed (unless terminate or delete stopped it) and the sprite
// removed: a half-provisioned sprite cannot be resumed.
func (r *Runner) provision(ctx context.Context, sess *store.Session) bool {
	id := sess.ID
	dbctx := context.WithoutCancel(ctx)
	if err := r.db.SetProvisionState(dbctx, id, store.ProvisionRunning); err != nil {
		if store.ErrorCode(err) != store.NotFound {
			r.log.Error("recording provisioning state", "session", id, "err", err)
		}
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.ProvisionTimeout)
	defer cancel()
	p := &provisioning{r: r, ctx: pctx, jobCtx: ctx, sess: sess, rt: r.runtime(sess.Runtime)}
	err := p.run()
	if err == nil {
		if err := r.db.SetProvisionState(dbctx, id, store.ProvisionDone); err != nil {
			r.log.Error("recording provisioning state", "session", id, "err", err)
			return false
		}
		return true
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, errTerminated) || errors.Is(cause, errDeleted) {
		return false // the store has its state; stop() removes the sprite
	}
	r.log.Warn("provisioning failed", "session", id, "reason", err.Error())
	if derr := r.backend.Delete(dbctx, id); derr != nil {
		r.log.Error("removing sprite", "session", id, "err", derr)
	}
	if err := r.db.SetProvisionState(dbctx, id, store.ProvisionNone); err != nil && store.ErrorCode(err) != store.NotFound {
		r.log.Error("recording provisioning state", "session", id, "err", err)
	}
	if err := r.db.FailSession(dbctx, id, err.Error()); err != nil {
		r.log.Error("recording provisioning failure", "session", id, "err", err)
	}
	return false
}

// run executes the stages in order; the error's text is the message the
// session fails with.
func (p *provisioning) run() error {
	var (
		sp          sprite.Sprite
		environment *store.Environment
		env         map[string]string
		resources   []store.Resource
		tokenEnv    = map[string]string{}
	)
	dbctx := context.WithoutCancel(p.ctx)
	err := p.stage(stageCreateSprite, "Failed to create Sprite: ", func() error {
		if p.sess.EnvironmentID != "" {
			var err error
			if environment, err = p.r.db.GetEnvironment(dbctx, p.sess.UserID, p.sess.EnvironmentID); err != nil {
				return err
			}
		}
		var err error
		sp, err = p.r.backend.Create(p.ctx, p.sess.ID, p.r.spriteOpts(p.sess, p.rt))
		return err
	})
	if err != nil {
		return err
	}
	// The install stage says what it does: a first install downloads
	// hundreds of MB from npm, later sessions reuse the cache.
	var installMsg string
	pkg := p.r.pin(p.rt)
	if pkg != nil {
		installMsg = fmt.Sprintf("%s@%s already installed", pkg.Name, pkg.Version)
		if !p.r.inst.Installed(*pkg) {
			installMsg = fmt.Sprintf("installing %s@%s from npm (first use on this server; later sessions reuse it)", pkg.Name, pkg.Version)
		}
	}
	if err := p.stageMsg(stageInstallRuntime, "Failed to install runtime: ", installMsg, func() (string, error) {
		if _, ok := p.rt.(runtimes.Unavailable); ok {
			return "", stageError("Unknown runtime: " + p.rt.Name())
		}
		if pkg == nil {
			return "", nil
		}
		start := time.Now()
		if _, err := p.r.inst.Ensure(p.ctx, *pkg); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s@%s ready (%.1fs)", pkg.Name, pkg.Version, time.Since(start).Seconds()), nil
	}); err != nil {
		return err
	}
	if environment != nil && environment.Networking.Type == "limited" {
		// Fail closed until an allowlisting proxy exists: never run a
		// session unrestricted that asked for limits.
		if err := p.stage(stageNetworkPolicy, "Failed to prepare Sprite: ", func() error {
			return stageError(limitedNetworkingMessage)
		}); err != nil {
			return err
		}
	}
	// env_file: the original wrote /tmp/aod-env on the sprite's disk. Here
	// the env vars and secrets are only assembled in memory and reach the
	// CLI through its process environment, never a file on the host disk.
	if err := p.stage(stageEnvFile, "Failed to prepare Sprite: ", func() error {
		var err error
		env, resources, err = p.r.sessionEnv(dbctx, p.sess, sp, p.rt)
		return err
	}); err != nil {
		return err
	}
	if hasToken(resources) {
		// Tokens go to the clone's environment only, read by a credential
		// helper; no credential store file.
		if err := p.stage(stageGitCredentials, "Failed to prepare Sprite: ", func() error {
			for i, res := range resources {
				if res.Token == "" {
					continue
				}
				if strings.ContainsAny(res.Token, "\r\n\x00") {
					return fmt.Errorf("repository %d: the authorization token contains a line break", i)
				}
				tokenEnv[tokenVar(i)] = res.Token
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := p.stage(stageProvisionSetup, "Provisioning script failed: ", func() error {
		script, err := provisionScript(environment, resources, sp)
		if err != nil || script == "" {
			return err
		}
		return p.runScript(sp, script, env, tokenEnv)
	}); err != nil {
		return err
	}
	var skills []runtimes.Skill
	if err := p.stage(stageRuntimeConfig, "Failed to write runtime config: ", func() error {
		var mcp []runtimes.MCPServer
		agent, err := p.r.db.SessionAgent(dbctx, p.sess.ID)
		switch {
		case store.ErrorCode(err) == store.NotFound:
			// The agent row is gone: nothing to configure beyond the CLI.
		case err != nil:
			return err
		default:
			if mcp, err = runtimes.ParseMCPServers(agent.MCPServers); err != nil {
				return err
			}
			if skills, err = runtimes.ParseSkills(agent.Skills); err != nil {
				return err
			}
		}
		if id := p.rt.NewSessionID(); id != "" && p.sess.RuntimeSessionID == "" {
			if err := p.r.db.SetRuntimeSessionID(dbctx, p.sess.ID, id); err != nil {
				return err
			}
			p.sess.RuntimeSessionID = id
		}
		return p.rt.Configure(p.ctx, sp, p.sess, mcp)
	}); err != nil {
		return err
	}
	if root, _ := p.rt.Skills(); len(skills) == 0 || root == "" {
		// The shell runtime has no skills to give them to.
		return nil
	}
	return p.stage(stageSkills, "Failed to write skills: ", func() error {
		return p.r.writeSkills(p.ctx, sp, p.rt, skills, env)
	})
}

// stage records one stage: started, then done or failed, with its
// duration. The returned error carries the failed stage's message.
func (p *provisioning) stage(name, prefix string, fn func() error) error {
	return p.stageMsg(name, prefix, "", func() (string, error) { return "", fn() })
}

// stageMsg is stage with progress messages: startMsg on the started row,
// and what fn returns on the done row.
func (p *provisioning) stageMsg(name, prefix, startMsg string, fn func() (string, error)) error {
	if p.ctx.Err() != nil {
		return stageError(p.failure(p.ctx.Err(), prefix)) // stopped between stages: start no more
	}
	start := time.Now()
	p.r.appendStage(p.sess.ID, name, store.StageStarted, nil, startMsg)
	doneMsg, err := fn()
	ms := time.Since(start).Milliseconds()
	if err == nil {
		p.r.appendStage(p.sess.ID, name, store.StageDone, &ms, doneMsg)
		return nil
	}
	msg := p.failure(err, prefix)
	p.r.appendStage(p.sess.ID, name, store.StageFailed, &ms, msg)
	return stageError(msg)
}

// failure is a failed stage's message: why provisioning was stopped, if
// it was, else the stage's own error.
func (p *provisioning) failure(err error, prefix string) string {
	var se stageError
	switch cause := context.Cause(p.jobCtx); {
	case errors.Is(cause, errTerminated), errors.Is(cause, errDeleted):
		return "Session terminated"
	case errors.Is(cause, errShutdown):
		return reasonShutdown
	case errors.Is(p.ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("Provisioning timed out after %s", p.r.cfg.ProvisionTimeout)
	case errors.As(err, &se):
		return string(se)
	}
	return prefix + err.Error()
}

func (r *Runner) appendStage(id, stage, state string, ms *int64, msg string) {
	err := r.db.AppendEvents(context.Background(), id, []store.Event{{
		Kind: store.KindStage, Stage: stage, State: state, DurationMS: ms, Data: msg,
	}})
	if err != nil && store.ErrorCode(err) != store.NotFound {
		r.log.Error("recording stage", "session", id, "stage", stage, "state", state, "err", err)
	}
}

// runScript runs the provisioning script in the sprite; a non-zero exit
// fails with the tail of its stderr.
func (p *provisioning) runScript(sp sprite.Sprite, script string, env, tokenEnv map[string]string) error {
	const scriptPath = sprite.TmpDir + "/aod-provision.sh"
	// The script holds no secrets (tokens come from the environment), so it
	// may sit in the sprite like the original's.
	if err := sp.WriteFile(p.ctx, scriptPath, []byte(script), 0o700); err != nil {
		return err
	}
	full := make(map[string]string, len(env)+len(tokenEnv)+1)
	for k, v := range env {
		full[k] = v
	}
	for k, v := range tokenEnv {
		full[k] = v
	}
	full["GIT_TERMINAL_PROMPT"] = "0" // a missing credential fails instead of waiting for a terminal
	stderr := &cmdout.Tail{Max: 8 << 10}
	proc, err := sp.Start(p.ctx, sprite.ExecRequest{
		Argv:   []string{"bash", "--noprofile", "--norc", sp.Path(scriptPath)},
		Dir:    sprite.HomeDir,
		Env:    envList(full),
		Stderr: stderr,
	})
	if err != nil {
		return err
	}
	st, _, err := p.r.supervise(p.ctx, proc, 0, nil)
	if err != nil {
		return err
	}
	if p.ctx.Err() != nil {
		return p.ctx.Err()
	}
	if st.Code != 0 {
		return fmt.Errorf("exit %d\nstderr:\n%s", st.Code, stderr.Last(2000))
	}
	return nil
}

// sessionEnv is the complete environment of a sprite's processes, in the
// original's order (later wins): the basics, AOD_SESSION_ID, AOD_MODEL,
// then the environment's env vars and the session's secrets
// (store.SessionSecrets merged those, secrets winning); then the runtime
// adds its variables (see Runtime.Env) and its CLI's directory in front
// of PATH. It also returns the resources with their tokens.
func (r *Runner) sessionEnv(ctx context.Context, sess *store.Session, sp sprite.Sprite, rt runtimes.Runtime) (map[string]string, []store.Resource, error) {
	vars, resources, err := r.db.SessionSecrets(ctx, sess.ID)
	if err != nil {
		return nil, nil, err
	}
	home := sp.Path(sprite.HomeDir)
	env := map[string]string{
		"HOME":   home,
		"TMPDIR": sp.Path(sprite.TmpDir),
		"LANG":   "C.UTF-8",
		"USER":   "sprite",
	}
	for k, v := range userToolEnv(home) {
		env[k] = v
	}
	for _, k := range hostNetworkEnv {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	env["AOD_SESSION_ID"] = sess.ID
	if sess.Model != "" {
		env["AOD_MODEL"] = sess.Model
	}
	for _, k := range store.SortedKeys(vars) {
		v := vars[k]
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, nil, fmt.Errorf("invalid env var name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, nil, fmt.Errorf("env var %s contains a NUL byte", k)
		}
		env[k] = v
	}
	rt.Env(sess, sp, env)
	if pkg := r.pin(rt); pkg != nil {
		// The CLI first, whatever PATH the user set.
		env["PATH"] = sp.Path(pkg.MountPath()) + "/node_modules/.bin:" + env["PATH"]
	}
	return env, resources, nil
}

// hostNetworkEnv are the server's TLS-trust and proxy settings, passed on
// so package managers in a sprite reach registries the way the host does
// (e.g. behind a proxy with its own CA). The CA files live under /etc,
// which sprites see read-only.
var hostNetworkEnv = []string{
	"SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}

// userToolEnv makes the language package managers install into the
// sprite's home instead of system directories (read-only under bubblewrap,
// and not ours to change without it), with their bin directories on PATH.
// The user's env vars are applied after these and may override them.
func userToolEnv(home string) map[string]string {
	local := home + "/.local"
	gemHome := local + "/share/gem"
	return map[string]string{
		"PATH":                      local + "/bin:" + gemHome + "/bin:" + sprite.DefaultPath,
		"NPM_CONFIG_PREFIX":         local,   // npm install --global
		"PYTHONUSERBASE":            local,   // pip install --user
		"PIP_USER":                  "1",     // (pip installs to the user base)
		"PIP_BREAK_SYSTEM_PACKAGES": "1",     // Debian's pip refuses --user installs otherwise
		"GEM_HOME":                  gemHome, // gem install
		"CARGO_INSTALL_ROOT":        local,   // cargo install → ~/.local/bin
		"GOPATH":                    home + "/go",
		"GOBIN":                     local + "/bin", // go install
	}
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range store.SortedKeys(env) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func hasToken(resources []store.Resource) bool {
	for _, r := range resources {
		if r.Token != "" {
			return true
		}
	}
	return false
}

func tokenVar(i int) string { return fmt.Sprintf("AOD_GIT_TOKEN_%d", i) }

// mountPath is where a repository is cloned: its mount_path, or
// /workspace/<repo name>.
func mountPath(res store.Resource) string {
	if res.MountPath != "" {
		return path.Clean(res.MountPath)
	}
	name := strings.TrimSuffix(path.Base(strings.TrimSuffix(res.URL, "/")), ".git")
	return path.Join(sprite.WorkspaceDir, name)
}

func spriteOptions(resources []store.Resource) sprite.Options {
	var opts sprite.Options
	for _, res := range resources {
		opts.Mounts = append(opts.Mounts, mountPath(res))
	}
	return opts
}

// spriteOpts are a session's sprite options: its repositories and its
// runtime's installed CLI, read-only.
func (r *Runner) spriteOpts(sess *store.Session, rt runtimes.Runtime) sprite.Options {
	opts := spriteOptions(sess.Resources)
	if pkg := r.pin(rt); pkg != nil {
		opts.ReadOnlyBinds = append(opts.ReadOnlyBinds, sprite.Bind{Host: r.inst.Path(*pkg), At: pkg.MountPath()})
	}
	return opts
}

// packageManagers in install order: apt first, language managers often
// need system libraries.
var packageManagers = []string{"apt", "cargo", "gem", "go", "npm", "pip"}

// provisionScript is the one script provisioning runs: packages, clones,
// then the environment's setup script. "" when there is nothing to do.
func provisionScript(environment *store.Environment, resources []store.Resource, sp sprite.Sprite) (string, error) {
	var b strings.Builder
	if environment != nil {
		for m := range environment.Packages {
			if !contains(packageManagers, m) {
				return "", fmt.Errorf("unknown package manager: %s", m)
			}
		}
		for _, m := range packageManagers {
			pkgs := environment.Packages[m]
			if len(pkgs) == 0 {
				continue
			}
			switch m {
			case "apt":
				// apt writes system directories: say so plainly where they
				// are read-only (bubblewrap sprites) instead of apt's own error.
				b.WriteString(`if [ ! -w /usr ]; then echo "apt packages cannot be installed: this sprite's system directories are read-only (bubblewrap sandbox); use pip, npm, gem, cargo or go packages, which install into the home directory" >&2; exit 1; fi` + "\n")
				fmt.Fprintf(&b, "apt-get update -qq && apt-get install -y %s\n", quoteAll(pkgs))
			case "gem":
				fmt.Fprintf(&b, "gem install %s\n", quoteAll(pkgs))
			case "npm":
				fmt.Fprintf(&b, "npm install --global %s\n", quoteAll(pkgs))
			case "pip":
				fmt.Fprintf(&b, "pip install %s\n", quoteAll(pkgs))
			default: // cargo, go: one package per command
				for _, pkg := range pkgs {
					fmt.Fprintf(&b, "%s install %s\n", m, shellQuote(pkg))
				}
			}
		}
	}
	for i, res := range resources {
		target := shellQuote(sp.Path(mountPath(res)))
		if res.Token == "" {
			fmt.Fprintf(&b, "git clone --depth=1 --quiet %s %s\n", shellQuote(res.URL), target)
			continue
		}
		// The empty helper resets any configured one; ours answers from the
		// environment, so the token is never written anywhere.
		helper := `!f() { test "$1" = get || return 0; echo username=x-access-token; echo "password=$` + tokenVar(i) + `"; }; f`
		fmt.Fprintf(&b, "git -c credential.helper= -c %s clone --depth=1 --quiet %s %s\n",
			shellQuote("credential.helper="+helper), shellQuote(res.URL), target)
	}
	if environment != nil {
		if s := strings.TrimSpace(environment.SetupScript); s != "" {
			b.WriteString(s + "\n")
		}
	}
	if b.Len() == 0 {
		return "", nil
	}
	return "#!/bin/bash\nset -e\n" + b.String(), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

// shellQuote quotes s for bash like Python's shlex.quote.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}
