package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/runner/egress"
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

const limitedNetworkingMessage = "Limited networking cannot be enforced without a sandbox (--sandbox none); refusing to run the session unrestricted"

// provisioning is one run of the stages for a session. The stages are its
// methods, run in order by run; each reads what earlier ones left in the
// fields below and adds its own.
type provisioning struct {
	r      *Runner
	ctx    context.Context // cancelled by terminate, shutdown or the provisioning deadline
	jobCtx context.Context // the job's: its cause says why ctx ended
	dbctx  context.Context // store calls outlive a cancelled ctx
	sess   *store.Session
	rt     runtimes.Runtime
	pkg    *runtimes.Package // the CLI's npm package; nil for shell

	sp          sprite.Sprite      // create_sprite
	environment *store.Environment // create_sprite; nil for a session without one
	env         map[string]string  // env_file: the sprite processes' environment, secrets included
	resources   []store.Resource   // env_file: the repositories, with their tokens
	redact      *cmdout.Redactor   // env_file: the secrets' values, kept out of logs and messages
	opts        sprite.Options     // create_sprite: the sprite's options
	layerKey    string             // create_sprite: its package layer, where sprites have them
	logBuf      *cmdout.Bounded    // provision_setup: what its commands wrote, for the provisioning log
	skills      []runtimes.Skill   // runtime_config: the agent's skills

	log *stageLog
}

// stageFlushAfter is how long a stage's started row may wait to be stored
// with the rows after it.
const stageFlushAfter = 20 * time.Millisecond

// stageLog holds provisioning's stage rows until a stage has run for
// stageFlushAfter, one fails, or provisioning ends: the stages that have
// nothing to do (most, most of the time) cost one commit together, while
// a slow one shows as started within stageFlushAfter.
type stageLog struct {
	r     *Runner
	id    string
	mu    sync.Mutex // held while storing, so rows land in order
	rows  []store.Event
	timer *time.Timer
}

func (l *stageLog) started(e store.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows = append(l.rows, e)
	l.timer = time.AfterFunc(stageFlushAfter, l.flush)
}

func (l *stageLog) ended(e store.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
	}
	l.rows = append(l.rows, e)
}

func (l *stageLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.rows) > 0 {
		l.r.appendStages(l.id, l.rows)
		l.rows = nil
	}
}

// stage is one step of provisioning as the log shows it: started, then
// done or failed with its duration. A stage whose when says no is skipped
// and writes nothing.
type stage struct {
	name     string
	prefix   string                              // of the failure message, before the stage's error
	when     func(*provisioning) bool            // nil: always
	startMsg func(*provisioning) string          // the started row's message; nil: none
	run      func(*provisioning) (string, error) // the work; the string is the done row's message
}

// stages are provisioning's steps in order (spec/runner.md §2).
var stages = []stage{
	{name: stageCreateSprite, prefix: "Failed to create Sprite: ", run: (*provisioning).createSprite},
	{name: stageInstallRuntime, prefix: "Failed to install runtime: ", startMsg: (*provisioning).installing, run: (*provisioning).installRuntime},
	{name: stageNetworkPolicy, prefix: "Failed to prepare Sprite: ", run: (*provisioning).networkPolicy},
	{name: stageEnvFile, prefix: "Failed to prepare Sprite: ", run: (*provisioning).envFile},
	{name: stageGitCredentials, prefix: "Failed to prepare Sprite: ", when: (*provisioning).hasTokens, run: (*provisioning).gitCredentials},
	{name: stageProvisionSetup, prefix: "Provisioning script failed: ", run: (*provisioning).provisionSetup},
	{name: stageRuntimeConfig, prefix: "Failed to write runtime config: ", run: (*provisioning).runtimeConfig},
	{name: stageSkills, prefix: "Failed to write skills: ", when: (*provisioning).hasSkills, run: (*provisioning).installSkills},
}

// prepared is what a turn needs of its session's sprite: the sprite and
// its processes' environment. Provisioning hands it to the job's first
// turn, so the secrets are read and decrypted once per job.
type prepared struct {
	sp  sprite.Sprite
	env map[string]string
}

// provision prepares a session's sprite. On failure the session is
// recorded failed (unless terminate or delete stopped it) and the sprite
// removed: a half-provisioned sprite cannot be resumed.
func (r *Runner) provision(ctx context.Context, sess *store.Session) (*prepared, bool) {
	id := sess.ID
	dbctx := context.WithoutCancel(ctx)
	if err := r.db.SetProvisionState(dbctx, id, store.ProvisionRunning); err != nil {
		if store.ErrorCode(err) != store.NotFound {
			r.log.Error("recording provisioning state", "session", id, "err", err)
		}
		return nil, false
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.ProvisionTimeout)
	defer cancel()
	rt := r.runtime(sess.Runtime)
	p := &provisioning{r: r, ctx: pctx, jobCtx: ctx, dbctx: dbctx, sess: sess, rt: rt, pkg: r.pin(rt)}
	err := p.run()
	if err == nil {
		if err := r.db.SetProvisionState(dbctx, id, store.ProvisionDone); err != nil {
			r.log.Error("recording provisioning state", "session", id, "err", err)
			return nil, false
		}
		return &prepared{sp: p.sp, env: p.env}, true
	}
	cause := context.Cause(ctx)
	if errors.Is(cause, errTerminated) || errors.Is(cause, errDeleted) {
		return nil, false // the store has its state; stop() removes the sprite
	}
	r.log.Warn("provisioning failed", "session", id, "reason", err.Error())
	if derr := r.backend.Delete(dbctx, id); derr != nil {
		r.log.Error("removing sprite", "session", id, "err", derr)
	}
	if err := r.db.SetProvisionState(dbctx, id, store.ProvisionNone); err != nil && store.ErrorCode(err) != store.NotFound {
		r.log.Error("recording provisioning state", "session", id, "err", err)
	}
	// The original's stderr row, for clients that print only output
	// events, stored before the session ends so every stream shows it
	// ahead of the error event (original-api.md §8.10).
	row := store.Event{Turn: sess.CurrentTurn, Kind: store.KindOutput, Stream: "stderr", Data: "provision failed: " + err.Error() + "\n"}
	if err := r.db.AppendEvents(dbctx, id, []store.Event{row}); err != nil && store.ErrorCode(err) != store.NotFound {
		r.log.Error("recording provisioning failure", "session", id, "err", err)
	}
	if err := r.db.FailSession(dbctx, id, err.Error()); err != nil {
		r.log.Error("recording provisioning failure", "session", id, "err", err)
	}
	return nil, false
}

// run executes the stages in order, up to the first failure; the error's
// text is the message the session fails with.
func (p *provisioning) run() error {
	p.log = &stageLog{r: p.r, id: p.sess.ID}
	defer p.log.flush() // before provisioning's end is stored
	for _, st := range stages {
		if st.when != nil && !st.when(p) {
			continue
		}
		if err := p.stage(st); err != nil {
			return err
		}
	}
	return nil
}

// stage runs one stage and records it. The returned error carries the
// failed stage's message.
func (p *provisioning) stage(st stage) error {
	if p.ctx.Err() != nil {
		return stageError(p.failure(p.ctx.Err(), st.prefix)) // stopped between stages: start no more
	}
	var startMsg string
	if st.startMsg != nil {
		startMsg = st.startMsg(p)
	}
	start := time.Now()
	p.log.started(stageEvent(st.name, store.StageStarted, nil, startMsg))
	doneMsg, err := st.run(p)
	ms := time.Since(start).Milliseconds()
	if err == nil {
		p.log.ended(stageEvent(st.name, store.StageDone, &ms, doneMsg))
		return nil
	}
	// The message is stored and shown: no secret a command printed in it.
	msg := p.redact.Redact(p.failure(err, st.prefix), false, false)
	p.log.ended(stageEvent(st.name, store.StageFailed, &ms, msg))
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

// createSprite reads the environment version the session runs (packages,
// setup script, network policy: later stages need it) and makes the sprite.
func (p *provisioning) createSprite() (string, error) {
	var err error
	if p.environment, err = p.r.db.SessionEnvironment(p.dbctx, p.sess.ID); err != nil {
		return "", err
	}
	p.opts = p.r.spriteOpts(p.sess, p.rt, p.environment)
	if p.r.Layers() {
		if p.layerKey = layerKey(p.environment); p.layerKey != "" && p.r.local.HasLayer(p.layerKey) {
			p.opts.Layer = p.layerKey
		}
	}
	// A backend that must wait (for a remote service's capacity) says so
	// on the stage as it waits.
	ctx := sprite.WithProgress(p.ctx, func(msg string) {
		p.log.started(stageEvent(stageCreateSprite, store.StageStarted, nil, msg))
	})
	p.sp, err = p.r.backend.Create(ctx, p.sess.ID, p.opts)
	return "", err
}

// installing says what install_runtime is about to do: a first install
// downloads hundreds of MB from npm, later sessions reuse the cache.
func (p *provisioning) installing() string {
	switch {
	case p.pkg == nil:
		return ""
	case p.r.mode == SandboxSprites:
		return fmt.Sprintf("installing %s@%s from npm inside the Sprite (once per sprite)", p.pkg.Name, p.pkg.Version)
	case !p.r.inst.Installed(*p.pkg):
		return fmt.Sprintf("installing %s@%s from npm (first use on this server; later sessions reuse it)", p.pkg.Name, p.pkg.Version)
	}
	return fmt.Sprintf("%s@%s already installed", p.pkg.Name, p.pkg.Version)
}

// installRuntime makes sure the runtime's CLI is in the shared cache.
func (p *provisioning) installRuntime() (string, error) {
	if _, ok := p.rt.(runtimes.Unavailable); ok {
		return "", stageError("Unknown runtime: " + p.rt.Name())
	}
	if p.pkg == nil {
		return "", nil
	}
	start := time.Now()
	if p.r.mode == SandboxSprites {
		already, err := p.installInSprite()
		if err != nil {
			return "", err
		}
		if already {
			return fmt.Sprintf("%s@%s ready (already in the Sprite)", p.pkg.Name, p.pkg.Version), nil
		}
		return fmt.Sprintf("%s@%s ready (installed in the Sprite from npm, %.1fs)", p.pkg.Name, p.pkg.Version, time.Since(start).Seconds()), nil
	}
	if _, err := p.r.inst.Ensure(p.ctx, *p.pkg); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s@%s ready (%.1fs)", p.pkg.Name, p.pkg.Version, time.Since(start).Seconds()), nil
}

// installInSprite installs the runtime's CLI from npm inside a remote
// sprite, where the sprite maps the CLIs' mount point (a sprite made
// before, or a retried provisioning, has it already: a marker says so).
func (p *provisioning) installInSprite() (already bool, err error) {
	dir := p.sp.Path(p.pkg.MountPath())
	marker := dir + "/.aod-installed"
	script := `set -e
if [ -f "$3" ]; then echo already; exit 0; fi
npm install --no-audit --no-fund --loglevel=error --prefix "$1" "$2"
touch "$3"`
	var out cmdout.Tail
	out.Max = 8 << 10
	env := []string{"PATH=" + sprite.DefaultPath, "HOME=" + sprite.HomeDir, "NPM_CONFIG_UPDATE_NOTIFIER=false"}
	for _, k := range hostNetworkEnv { // npm reaches the registry as the host does (a proxy, its CA)
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	proc, err := p.sp.Start(p.ctx, sprite.ExecRequest{
		Argv:   []string{"sh", "-c", script, "install", dir, p.pkg.Name + "@" + p.pkg.Version, marker},
		Dir:    sprite.HomeDir,
		Env:    env,
		Stdout: &out,
		Stderr: &out,
	})
	if err != nil {
		return false, err
	}
	st, _, err := p.r.supervise(p.ctx, proc, 0, nil, nil)
	switch {
	case err != nil:
		return false, err
	case p.ctx.Err() != nil:
		return false, p.ctx.Err()
	case st.Code != 0:
		return false, fmt.Errorf("npm install %s@%s in the Sprite: exit %d\n%s", p.pkg.Name, p.pkg.Version, st.Code, out.Last(2000))
	}
	return strings.TrimSpace(out.Last(100)) == "already", nil
}

// networkPolicy says which policy the sprite's egress proxy applies. With
// no sandbox there is no proxy: a session that asked for limits never runs
// unrestricted.
func (p *provisioning) networkPolicy() (string, error) {
	n := p.r.network(p.sess, p.environment)
	if ps, ok := p.sp.(sprite.Policed); ok {
		if err := ps.SetNetwork(p.ctx, n); err != nil {
			return "", err
		}
		if n.Limited {
			return "limited: only " + strings.Join(append(slices.Clone(n.Hosts), n.Models...), ", ") + "; the Sprite's network policy denies everything else", nil
		}
		return "unrestricted: the Sprites service's default network policy", nil
	}
	switch {
	case p.r.mode == SandboxNone && n.Limited:
		return "", stageError(limitedNetworkingMessage)
	case p.r.mode == SandboxNone:
		return "unrestricted: the host's own network, unfiltered (no sandbox)", nil
	case n.Limited:
		return "limited: only " + strings.Join(n.Hosts, ", ") + " (and the operator's --egress-allow); everything else is refused by aod's egress proxy", nil
	}
	return "unrestricted: any public host through aod's egress proxy; loopback, link-local and private addresses are refused unless the operator allows them", nil
}

// envFile assembles the sprite processes' environment, reading and
// decrypting the session's secrets: the one read of them in this job (the
// first turn reuses the result). The original wrote /tmp/aod-env on the
// sprite's disk; here the env vars and secrets stay in memory and reach
// the CLI through its process environment, never a file on the host disk.
func (p *provisioning) envFile() (string, error) {
	vars, resources, err := p.r.db.SessionSecrets(p.dbctx, p.sess.ID)
	if err != nil {
		return "", err
	}
	p.resources, p.redact = resources, redactor(vars, resources)
	p.env, err = p.r.spriteEnv(p.sess, p.sp, p.rt, vars, resources)
	return "", err
}

// redactor hides a session's secrets: its env vars (all that
// store.SessionSecrets merged: the server's --pass-env variables, the
// user's secrets, the environment's and the session's own) and its
// repository tokens.
func redactor(vars map[string]string, resources []store.Resource) *cmdout.Redactor {
	values := make([]string, 0, len(vars)+len(resources))
	for _, v := range vars {
		values = append(values, v)
	}
	for _, res := range resources {
		values = append(values, res.Token)
	}
	return cmdout.NewRedactor(values...)
}

func (p *provisioning) hasTokens() bool { return hasToken(p.resources) }

// gitCredentials writes the sprite's git config, which makes git ask for
// a repository's token whenever it needs one, in this and every later turn
// (see repos.go). No token is written: no credential store file.
func (p *provisioning) gitCredentials() (string, error) {
	for i, res := range p.resources {
		if problem := tokenProblem(res.Token); problem != "" {
			return "", fmt.Errorf("repository %d: %s", i, problem)
		}
	}
	asks := !p.r.tokensInEnv()
	if err := p.sp.WriteFile(p.ctx, gitConfigPath, gitConfig(p.resources, asks), 0o644); err != nil {
		return "", err
	}
	switch {
	case asks:
		return "git asks aod for the repositories' tokens (credential helper)", nil
	case p.r.mode == SandboxSprites:
		return "git reads the repositories' tokens from each process's environment (in the Sprite's memory, never on its disk)", nil
	}
	return "git reads the repositories' tokens from each process's environment (no sandbox)", nil
}

// provisionSetup puts the environment's packages in place (its package
// layer where sprites have them, else the installs run in the sprite),
// then runs the clones and the environment's setup script, if there is
// anything to do; what they write is kept as the provisioning log.
func (p *provisioning) provisionSetup() (msg string, err error) {
	p.logBuf = &cmdout.Bounded{Head: provisionLogHead, Tail: provisionLogTail}
	defer p.keepLog() // before the stage's end, and any failure, is stored
	if p.layerKey != "" {
		steps, err := packageSteps(p.environment)
		if err != nil {
			return "", err
		}
		if p.opts.Layer == "" {
			if msg, err = p.layerFor(p.layerKey, steps); err != nil {
				return "", err
			}
			p.opts.Layer = p.layerKey
			if p.sp, err = p.r.backend.Get(p.ctx, p.sess.ID, p.opts); err != nil {
				return "", err
			}
		} else {
			msg = "packages from the environment's layer (" + packagesLine(steps) + ")"
		}
	}
	script, err := provisionScript(p.environment, p.resources, p.sp, p.layerKey == "")
	if err != nil || script == "" {
		return msg, err
	}
	return msg, p.runScript(script)
}

// runtimeConfig writes the CLI's config files with the agent's MCP
// servers, and fixes the conversation id where aod chooses it.
func (p *provisioning) runtimeConfig() (string, error) {
	var mcp []runtimes.MCPServer
	agent, err := p.r.db.SessionAgent(p.dbctx, p.sess.ID)
	switch {
	case store.ErrorCode(err) == store.NotFound:
		// The agent row is gone: nothing to configure beyond the CLI.
	case err != nil:
		return "", err
	default:
		if mcp, err = runtimes.ParseMCPServers(agent.MCPServers); err != nil {
			return "", err
		}
		if p.skills, err = runtimes.ParseSkills(agent.Skills); err != nil {
			return "", err
		}
	}
	if id := p.rt.NewSessionID(); id != "" && p.sess.RuntimeSessionID == "" {
		if err := p.r.db.SetRuntimeSessionID(p.dbctx, p.sess.ID, id); err != nil {
			return "", err
		}
		p.sess.RuntimeSessionID = id
	}
	return "", p.rt.Configure(p.ctx, p.sp, p.sess, mcp)
}

// hasSkills: the agent has skills and the runtime somewhere to put them
// (the shell runtime has none).
func (p *provisioning) hasSkills() bool {
	root, _ := p.rt.Skills()
	return len(p.skills) > 0 && root != ""
}

func (p *provisioning) installSkills() (string, error) {
	return "", p.r.writeSkills(p.ctx, p.sp, p.rt, p.skills, p.env)
}

func (r *Runner) appendStage(id, stage, state string, ms *int64, msg string) {
	r.appendStages(id, []store.Event{stageEvent(stage, state, ms, msg)})
}

func stageEvent(stage, state string, ms *int64, msg string) store.Event {
	return store.Event{Kind: store.KindStage, Stage: stage, State: state, DurationMS: ms, Data: msg}
}

// appendStages stores stage rows in one commit.
func (r *Runner) appendStages(id string, rows []store.Event) {
	err := r.db.AppendEvents(context.Background(), id, rows)
	if err != nil && store.ErrorCode(err) != store.NotFound {
		r.log.Error("recording stages", "session", id, "rows", len(rows), "err", err)
	}
}

// The provisioning log keeps the first provisionLogHead and the last
// provisionLogTail bytes of what the script writes (stdout and stderr
// together), with a line saying how much was left out between them.
const (
	provisionLogHead = 64 << 10
	provisionLogTail = 1 << 20
)

// runScript runs the provisioning script in the sprite and keeps what it
// writes as the session's provisioning log; a non-zero exit fails with the
// tail of its stderr.
func (p *provisioning) runScript(script string) error {
	sp := p.sp
	const scriptPath = sprite.TmpDir + "/aod-provision.sh"
	// The script holds no secrets (git asks for tokens, see repos.go), so
	// it may sit in the sprite like the original's.
	if err := sp.WriteFile(p.ctx, scriptPath, []byte(script), 0o700); err != nil {
		return err
	}
	full := make(map[string]string, len(p.env)+1)
	for k, v := range p.env {
		full[k] = v
	}
	full["GIT_TERMINAL_PROMPT"] = "0" // a missing credential fails instead of waiting for a terminal
	stderr := &cmdout.Tail{Max: 8 << 10}
	proc, err := sp.Start(p.ctx, sprite.ExecRequest{
		Argv:   []string{"bash", "--noprofile", "--norc", sp.Path(scriptPath)},
		Dir:    sprite.HomeDir,
		Env:    envList(full),
		Stdout: p.logBuf,
		Stderr: io.MultiWriter(stderr, p.logBuf),
	})
	if err != nil {
		return err
	}
	st, _, err := p.r.supervise(p.ctx, proc, 0, nil, nil)
	if err != nil {
		return err
	}
	if p.ctx.Err() != nil {
		return p.ctx.Err()
	}
	// The tail may begin inside a secret: Redact drops the fragment.
	tail := p.redact.Redact(stderr.Last(2000), true, false)
	if st.Limit != "" {
		return fmt.Errorf("%s\nstderr:\n%s", st.Limit, tail)
	}
	if st.Code != 0 {
		return fmt.Errorf("exit %d\nstderr:\n%s", st.Code, tail)
	}
	return nil
}

// keepLog stores what the package installs and the provisioning script
// wrote as the session's
// provisioning log, its secrets redacted.
func (p *provisioning) keepLog() {
	head, tail, omitted := p.logBuf.Text()
	text := p.redact.Redact(head, false, omitted > 0)
	if omitted > 0 {
		text += fmt.Sprintf("\n[aod: %d bytes of output left out here]\n", omitted) + p.redact.Redact(tail, true, false)
	}
	if text == "" {
		return
	}
	if err := p.r.db.SetProvisionLog(p.dbctx, p.sess.ID, text); err != nil {
		p.r.log.Error("recording the provisioning log", "session", p.sess.ID, "err", err)
	}
}

// sessionEnv is the complete environment of a sprite's processes, in the
// original's order (later wins): the basics, AOD_SESSION_ID, AOD_MODEL,
// then the session's env vars as store.SessionSecrets merged them (the
// server's --pass-env variables, the user's secrets, the environment's
// env vars, the session's secrets, each winning over the ones before),
// and without a sandbox the repositories' tokens (see repos.go); then the
// runtime adds its variables (see runtimes.Runtime.Env) and its CLI's
// directory in front of PATH. It also returns the resources with their
// tokens.
func (r *Runner) sessionEnv(ctx context.Context, sess *store.Session, sp sprite.Sprite, rt runtimes.Runtime) (map[string]string, []store.Resource, error) {
	vars, resources, err := r.db.SessionSecrets(ctx, sess.ID)
	if err != nil {
		return nil, nil, err
	}
	env, err := r.spriteEnv(sess, sp, rt, vars, resources)
	return env, resources, err
}

// spriteEnv is sessionEnv's environment from the session's decrypted env
// vars and repositories.
func (r *Runner) spriteEnv(sess *store.Session, sp sprite.Sprite, rt runtimes.Runtime, vars map[string]string, resources []store.Resource) (map[string]string, error) {
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
			return nil, fmt.Errorf("invalid env var name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("env var %s contains a NUL byte", k)
		}
		env[k] = v
	}
	if r.tokensInEnv() {
		// No socket to ask aod through: git's helper reads the tokens here.
		for i, res := range resources {
			if res.Token != "" {
				env[tokenVar(i)] = res.Token
			}
		}
	}
	rt.Env(sess, sp, env)
	if pkg := r.pin(rt); pkg != nil {
		// The CLI first, whatever PATH the user set.
		env["PATH"] = sp.Path(pkg.MountPath()) + "/node_modules/.bin:" + env["PATH"]
	}
	return env, nil
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

// spriteOpts are a session's sprite options: its repositories, its
// runtime's installed CLI, read-only, and its environment's network policy
// (environment is nil for a session without one).
func (r *Runner) spriteOpts(sess *store.Session, rt runtimes.Runtime, environment *store.Environment) sprite.Options {
	opts := spriteOptions(sess.Resources)
	if pkg := r.pin(rt); pkg != nil {
		opts.ReadOnlyBinds = append(opts.ReadOnlyBinds, sprite.Bind{Host: r.inst.Path(*pkg), At: pkg.MountPath()})
	}
	opts.Network = r.network(sess, environment)
	return opts
}

// network is a session's egress policy: its environment's, plus the model
// API its CLI talks to (the configured endpoint, or the provider's host).
func (r *Runner) network(sess *store.Session, environment *store.Environment) sprite.Network {
	var n sprite.Network
	if environment != nil && environment.Networking.Type == "limited" {
		n.Limited = true
		hosts := environment.Networking.AllowedHosts()
		if environment.Networking.AllowPackageManagers() {
			for _, m := range store.PackageManagers {
				hosts = append(hosts, store.PackageRegistries[m]...)
			}
		}
		for _, h := range hosts {
			if h = egress.NormalHost(h); h != "" && !slices.Contains(n.Hosts, h) {
				n.Hosts = append(n.Hosts, h)
			}
		}
	}
	if ep := r.cfg.ModelEndpoints.For(sess.Provider); ep != "" {
		if u, err := url.Parse(ep); err == nil && u.Hostname() != "" {
			port := u.Port()
			switch {
			case port != "":
			case u.Scheme == "https":
				port = "443"
			default:
				port = "80"
			}
			n.Models = append(n.Models, net.JoinHostPort(u.Hostname(), port))
		}
	} else if h := catalogue.APIHost(sess.Provider); h != "" && n.Limited && !slices.Contains(n.Hosts, h) {
		n.Hosts = append(n.Hosts, h)
	}
	return n
}

// packageStep is one package manager's share of an environment's
// packages: its install commands.
type packageStep struct {
	manager string
	pkgs    []string
	script  string
}

// packageSteps are an environment's package installs, in the original's
// order of managers.
func packageSteps(environment *store.Environment) ([]packageStep, error) {
	if environment == nil {
		return nil, nil
	}
	for m := range environment.Packages {
		if !slices.Contains(store.PackageManagers, m) {
			return nil, fmt.Errorf("unknown package manager: %s", m)
		}
	}
	var steps []packageStep
	for _, m := range store.PackageManagers { // in install order
		pkgs := environment.Packages[m]
		if len(pkgs) == 0 {
			continue
		}
		var b strings.Builder
		switch m {
		case "apt":
			// apt writes system directories: say so plainly where they
			// are read-only instead of apt's own error.
			b.WriteString(`if [ ! -w /usr ]; then echo "apt packages cannot be installed: this sprite's system directories are read-only (a writable root needs aod to run as root); use pip, npm, gem, cargo or go packages, which install into the home directory" >&2; exit 1; fi` + "\n")
			fmt.Fprintf(&b, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y %s\n", quoteAll(pkgs))
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
		steps = append(steps, packageStep{manager: m, pkgs: pkgs, script: b.String()})
	}
	return steps, nil
}

// provisionScript is the one script provisioning runs: packages (unless
// a package layer has them), clones, then the environment's setup script.
// "" when there is nothing to do.
func provisionScript(environment *store.Environment, resources []store.Resource, sp sprite.Sprite, packages bool) (string, error) {
	var b strings.Builder
	steps, err := packageSteps(environment)
	if err != nil {
		return "", err
	}
	if packages {
		for _, st := range steps {
			b.WriteString(st.script)
		}
	}
	for _, res := range resources {
		b.WriteString(cloneScript(res, sp.Path(mountPath(res))))
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
