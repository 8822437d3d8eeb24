// Package runner supervises sessions: it provisions each session's sprite,
// runs its turns there with bounded concurrency, and writes every stage,
// output chunk and turn end to the store's event log, enforcing timeouts,
// output caps, terminate and crash reconciliation.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aod/aod/internal/metrics"
	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// The defaults New applies to zero Config fields, exported so command-line
// flags can offer them.
const (
	DefaultMaxRunning       = 4
	DefaultOutputLimit      = 512 << 20 // bytes per session, across turns
	DefaultKillGrace        = 3 * time.Second
	DefaultProvisionTimeout = 15 * time.Minute
	DefaultSweepInterval    = 10 * time.Minute
	DefaultWarmSprites      = 2 // started ahead, so a new session's first command starts at once
	DefaultLayerRetention   = 7 * 24 * time.Hour
	DefaultSpriteRetention  = 7 * 24 * time.Hour

	// Limits.
	DefaultProcesses     = 1024     // per sprite
	DefaultFileSizeBytes = 8 << 30  // per file
	DefaultCPUSeconds    = 7200     // per process
	DefaultMemoryBytes   = 4 << 30  // per sprite (per process without cgroups)
	DefaultDiskBytes     = 10 << 30 // the sprite's files

)

// Config tunes a Runner. Zero values take the defaults above.
type Config struct {
	DataDir string
	// Sandbox is auto (bwrap when a probe run works, else none; the
	// default), bwrap (fail closed) or none.
	Sandbox string
	// MaxRunning caps sessions provisioning or running at once.
	MaxRunning int
	// OutputLimit caps the output bytes stored per session, across turns.
	OutputLimit int64
	// KillGrace is the time between SIGTERM and SIGKILL when a turn times
	// out.
	KillGrace time.Duration
	// ProvisionTimeout bounds all provisioning stages.
	ProvisionTimeout time.Duration
	// SweepInterval is how often sprites of deleted or terminated sessions
	// are looked for and removed while running (besides at start), should
	// a removal have failed.
	SweepInterval time.Duration
	// RuntimeDir is the shared cache of installed agent CLIs, one
	// directory per package@version (default <DataDir>/runtimes).
	RuntimeDir string
	// RuntimeVersions overrides the pinned npm version of a runtime's CLI,
	// by runtime name ("claude": "2.1.197"); the pins are in the catalogue.
	RuntimeVersions map[string]string
	// ModelEndpoints point the agent CLIs at other model APIs (a gateway,
	// or aod's fake model API for offline runs).
	ModelEndpoints ModelEndpoints
	// EgressAllow are hosts and addresses (a name, an IP or a CIDR) the
	// sprites' egress proxy lets through although they are loopback,
	// link-local or private (internal package mirrors), and that limited
	// policies allow too (--egress-allow).
	EgressAllow []string
	// EgressResolver and EgressDial replace the proxy's name resolution and
	// dialling (tests map names to local upstreams); nil: the system's.
	EgressResolver egress.Resolver
	EgressDial     func(ctx context.Context, network, address string) (net.Conn, error)
	// LayerRetention is how long an environment's package layer that no
	// sprite is made over is kept (the sweep removes it after).
	LayerRetention time.Duration
	// SpriteRetention is how long a finished (completed, failed or
	// terminated) session keeps its sprite, its files downloadable and
	// its conversation resumable, after its last change.
	SpriteRetention time.Duration
	// WarmSprites is how many bubblewrap sprites are kept started ahead,
	// their init parked, so that a new session's first command starts at
	// once; negative: none.
	WarmSprites int
	Limits      Limits
	Logger      *slog.Logger
	// Backend, when set, runs the sessions (Sandbox "sprites"): a remote
	// service's VMs instead of this host's sandboxes. The agent CLIs are
	// then installed inside each sprite, and the sprite's network policy
	// is the service's.
	Backend sprite.Backend
}

// ModelEndpoints point the agent CLIs at other model APIs (see
// runtimes.Endpoints); Keyless says which providers need no key then.
type ModelEndpoints = runtimes.Endpoints

// Limits are per-process resource limits inside a sprite (setrlimit via
// prlimit). Zero fields take the defaults.
type Limits = local.Limits

// Sandbox modes of the local backend (see Config.Sandbox).
const (
	SandboxAuto  = local.SandboxAuto
	SandboxBwrap = local.SandboxBwrap
	SandboxNone  = local.SandboxNone
	// SandboxSprites runs every session on a remote service's VM (Fly.io
	// Sprites, see Config.Backend).
	SandboxSprites = "sprites"
)

// Store is the part of the database the runner uses, declared here so the
// runner depends on exactly these calls rather than on the whole of
// *store.DB (and tests can count or fail them).
type Store interface {
	// Sessions and their turns.
	GetSession(ctx context.Context, userID, id string) (*store.Session, error)
	NextTurn(ctx context.Context, id string) (*store.Session, *store.Turn, error)
	SessionsToRecover(ctx context.Context) ([]*store.Session, error)
	SessionStatuses(ctx context.Context) (map[string]store.SessionEnd, error)
	SpriteRemoved(ctx context.Context, id string) (bool, error)
	SetProvisionState(ctx context.Context, id, state string) error
	SetRuntimeSessionID(ctx context.Context, id, runtimeID string) error
	StartTurn(ctx context.Context, id string, turn int) (bool, error)
	FinishTurn(ctx context.Context, id string, turn int, r store.TurnResult) error
	FailSession(ctx context.Context, id, reason string) error
	ListTurns(ctx context.Context, userID, id string) ([]*store.Turn, error)
	// Turns whose commands outlive aod's connection (a remote backend).
	SetTurnExec(ctx context.Context, id string, turn int, execID string) error
	DetachTurn(ctx context.Context, id string, turn int, stdoutSeen, stderrSeen int64) error
	DetachedTurn(ctx context.Context, id string) (*store.DetachedTurn, error)
	RunningTurnExec(ctx context.Context, id string) (string, error)
	// What provisioning reads: the environment version the session runs,
	// the agent's configuration and the decrypted secrets (env vars and
	// repository tokens).
	SessionEnvironment(ctx context.Context, id string) (*store.Environment, error)
	SessionAgent(ctx context.Context, id string) (*store.AgentVersion, error)
	SessionSecrets(ctx context.Context, id string) (env map[string]string, resources []store.Resource, err error)
	// The event log, and the provisioning script's log.
	AppendEvents(ctx context.Context, sessionID string, events []store.Event) error
	OutputBytes(ctx context.Context, sessionID string) (int64, error)
	SessionSpent(ctx context.Context, id string) (float64, error)
	SetProvisionLog(ctx context.Context, id, log string) error
	// The sprites' egress record (read to tell why a command failed).
	RecordEgress(ctx context.Context, sessionID string, hits []store.EgressHit) error
	ListEgress(ctx context.Context, userID, sessionID string) ([]store.EgressEntry, error)
}

// main, the server's and the UI's tests pass their *store.DB.
var _ Store = (*store.DB)(nil)

// Why a job's context was cancelled.
var (
	errTerminated = errors.New("session terminated")
	errDeleted    = errors.New("session deleted")
	errShutdown   = errors.New("server shutting down")
)

// Reasons recorded on sessions that a server stop cut short.
const (
	reasonRestarted = "server restarted during the turn"
	reasonShutdown  = "server shut down during the turn"
)

// Runner runs sessions in sprites. It is told about work by Enqueue and
// about sessions that must stop or disappear by Terminate and Delete.
type Runner struct {
	db      Store
	cfg     Config
	log     *slog.Logger
	backend sprite.Backend
	mode    string
	inst    *runtimes.Installer

	mu        sync.Mutex
	cond      *sync.Cond
	queue     []string
	jobs      map[string]*job // sessions queued or active
	runningBy map[string]int  // active jobs by session owner
	started   bool
	closed    bool

	stopSweep chan struct{}                  // closed by Shutdown
	resume    map[string]*store.DetachedTurn // turns to take up again, by session
	egress    *egressLog
	local     *local.Backend

	workers sync.WaitGroup
	bg      sync.WaitGroup // sprite removals, layer builds
	layers  layers
}

// job is the runner's state of one session while it is queued or active.
type job struct {
	queued bool
	active bool
	again  bool // enqueued while active: look for work again afterwards
	gone   bool // terminated or deleted: run nothing more
	cancel context.CancelCauseFunc
	ctx    context.Context
	idle   chan struct{} // closed when the job leaves the map
	intr   chan struct{} // closed by an interrupt of this activation's turn
	user   string        // the session's owner, for fair run slots
}

// New checks the sandbox and returns a runner that does nothing until Start.
func New(db Store, cfg Config) (*Runner, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("runner: DataDir is required")
	}
	if cfg.Sandbox == "" {
		cfg.Sandbox = SandboxAuto
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = DefaultMaxRunning
	}
	if cfg.OutputLimit <= 0 {
		cfg.OutputLimit = DefaultOutputLimit
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.LayerRetention <= 0 {
		cfg.LayerRetention = DefaultLayerRetention
	}
	if cfg.SpriteRetention <= 0 {
		cfg.SpriteRetention = DefaultSpriteRetention
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.ProvisionTimeout <= 0 {
		cfg.ProvisionTimeout = DefaultProvisionTimeout
	}
	if cfg.WarmSprites == 0 {
		cfg.WarmSprites = DefaultWarmSprites
	}
	if cfg.Limits.Processes == 0 {
		cfg.Limits.Processes = DefaultProcesses
	}
	if cfg.Limits.FileSizeBytes == 0 {
		cfg.Limits.FileSizeBytes = DefaultFileSizeBytes
	}
	if cfg.Limits.MemoryBytes == 0 {
		cfg.Limits.MemoryBytes = DefaultMemoryBytes
	}
	if cfg.Limits.DiskBytes == 0 {
		cfg.Limits.DiskBytes = DefaultDiskBytes
	}
	if cfg.Limits.CPUSeconds == 0 {
		cfg.Limits.CPUSeconds = DefaultCPUSeconds
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	runtimeDir, err := runtimes.CacheDir(cfg.DataDir, cfg.RuntimeDir)
	if err != nil {
		return nil, fmt.Errorf("runner: runtime dir: %w", err)
	}
	cfg.RuntimeDir = runtimeDir
	if err := runtimes.CheckVersions(cfg.RuntimeVersions); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	r := &Runner{db: db, cfg: cfg, log: cfg.Logger, jobs: map[string]*job{}, runningBy: map[string]int{}, stopSweep: make(chan struct{}),
		resume: map[string]*store.DetachedTurn{}}
	r.cond = sync.NewCond(&r.mu)
	// npm runs on the host: the cache is shared and a sprite may have no
	// network.
	r.inst = runtimes.NewInstaller(cfg.RuntimeDir, local.FindBinary("npm"), cfg.Logger)

	r.egress = &egressLog{db: db, log: cfg.Logger}
	switch {
	case cfg.Backend != nil:
		if cfg.Sandbox != SandboxAuto && cfg.Sandbox != SandboxSprites {
			return nil, fmt.Errorf("runner: sandbox %q with a remote backend", cfg.Sandbox)
		}
		r.backend, r.mode = cfg.Backend, SandboxSprites
		return r, nil
	case cfg.Sandbox == SandboxSprites:
		return nil, errors.New("runner: sandbox sprites needs a remote backend")
	case cfg.Sandbox != SandboxAuto && cfg.Sandbox != SandboxBwrap && cfg.Sandbox != SandboxNone:
		return nil, fmt.Errorf("runner: unknown sandbox %q (want auto, bwrap, none or sprites)", cfg.Sandbox)
	}
	var allow []egress.Rule
	for _, a := range cfg.EgressAllow {
		rule, err := egress.ParseRule(a)
		if err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		allow = append(allow, rule)
	}
	lb, err := local.New(local.Config{
		DataDir: cfg.DataDir, Sandbox: cfg.Sandbox, Limits: cfg.Limits, Drain: cfg.KillGrace, Logger: cfg.Logger,
		EgressAllow: allow, Resolver: cfg.EgressResolver, Dial: cfg.EgressDial, Record: r.egress.record, GitCredentials: r.gitCredential,
		WarmSprites: max(cfg.WarmSprites, 0),
	})
	if err != nil {
		return nil, err
	}
	r.backend, r.local, r.mode = lb, lb, lb.Sandbox()
	return r, nil
}

// runtime returns the adapter of a session's runtime, talking to the
// endpoints configured now (they may differ from those of the server that
// provisioned the session).
func (r *Runner) runtime(name string) runtimes.Runtime {
	return runtimes.For(name, r.cfg.ModelEndpoints)
}

// pin is the npm package of a runtime at the configured version, nil for
// a runtime that installs nothing (shell).
func (r *Runner) pin(rt runtimes.Runtime) *runtimes.Package {
	return runtimes.Pin(rt, r.cfg.RuntimeVersions)
}

// Limits reports how each sprite limit is enforced (for /health).
func (r *Runner) Limits() map[string]string {
	if r.local == nil {
		return map[string]string{"sandbox": "sprites: one VM per session on the Sprites service, with the service's limits"}
	}
	return r.local.Enforced()
}

// Layers reports whether environments' packages are built into package
// layers here (sprites have a writable root).
// tokensInEnv says whether git in a sprite reads repository tokens from
// its processes' environment: there is no socket to ask aod through
// without a local sandbox (none), or on a remote VM.
func (r *Runner) tokensInEnv() bool { return r.mode == SandboxNone || r.mode == SandboxSprites }

func (r *Runner) Layers() bool { return r.local != nil && r.local.Layers() }

// Sandbox reports the isolation in use: "bwrap" or "none".
func (r *Runner) Sandbox() string { return r.mode }

// Start reconciles what a previous process left behind, then starts the
// workers. Sessions cut short by a crash end failed; queued turns run.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	if r.started || r.closed {
		r.mu.Unlock()
		return errors.New("runner: Start called twice or after Shutdown")
	}
	r.started = true
	r.mu.Unlock()

	sessions, err := r.db.SessionsToRecover(ctx)
	if err != nil {
		return fmt.Errorf("runner: list sessions to recover: %w", err)
	}
	for _, s := range sessions {
		if s.Status == store.StatusRunning && r.mode == SandboxSprites {
			// A turn a shutdown let go of runs on in its sprite: take it up.
			dt, err := r.db.DetachedTurn(ctx, s.ID)
			if err != nil {
				return fmt.Errorf("runner: read session %s's turn: %w", s.ID, err)
			}
			if dt != nil {
				r.log.Info("taking up a turn that ran on through a restart", "session", s.ID, "turn", dt.Number)
				r.mu.Lock()
				r.resume[s.ID] = dt
				r.mu.Unlock()
				r.Enqueue(s.ID)
				continue
			}
		}
		switch {
		case s.Status == store.StatusRunning || s.ProvisionState == store.ProvisionRunning:
			r.log.Warn("session cut short by a restart: marking it failed", "session", s.ID, "status", s.Status,
				"provision_state", s.ProvisionState)
			r.killLost(ctx, s.ID)
			if err := r.db.FailSession(ctx, s.ID, reasonRestarted); err != nil {
				return fmt.Errorf("runner: fail session %s: %w", s.ID, err)
			}
			if s.ProvisionState != store.ProvisionDone {
				// A half-provisioned sprite cannot be resumed.
				r.backend.Delete(ctx, s.ID)
			}
		default:
			r.Enqueue(s.ID)
		}
	}
	if err := r.sweep(ctx); err != nil {
		r.log.Error("sweeping sprite directories", "err", err)
	}
	for range r.cfg.MaxRunning {
		r.workers.Add(1)
		go r.work()
	}
	r.workers.Add(1)
	go r.sweepLoop()
	return nil
}

// killLost kills what a turn cut short by a crash still runs on a backend
// whose commands outlive aod (nobody will read its output now): the
// session is failed, so its sprite must run nothing more.
func (r *Runner) killLost(ctx context.Context, id string) {
	if r.mode != SandboxSprites {
		return
	}
	exec, err := r.db.RunningTurnExec(ctx, id)
	if err != nil || exec == "" {
		return
	}
	sp, err := r.backend.Get(ctx, id, sprite.Options{})
	if err != nil {
		return // gone with its sprite
	}
	if k, ok := sp.(sprite.Killer); ok {
		if err := k.Kill(ctx, exec); err != nil {
			r.log.Error("killing a command a crash cut off", "session", id, "exec", exec, "err", err)
		}
	}
}

// sweepLoop repeats the start-up sweep every SweepInterval until Shutdown.
func (r *Runner) sweepLoop() {
	defer r.workers.Done()
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stopSweep:
			return
		case <-t.C:
			if err := r.sweep(context.Background()); err != nil {
				r.log.Error("sweeping sprite directories", "err", err)
			}
		}
	}
}

// sweep removes the sprites of sessions that are gone, and of finished
// sessions past the retention (which then refuse prompts).
func (r *Runner) sweep(ctx context.Context) error {
	names, err := r.backend.List(ctx)
	if err != nil {
		return err
	}
	statuses, err := r.db.SessionStatuses(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		end, ok := statuses[name]
		if ok && (!store.TerminalStatus(end.Status) || time.Since(end.UpdatedAt) < r.cfg.SpriteRetention) {
			continue
		}
		r.mu.Lock()
		_, busy := r.jobs[name]
		r.mu.Unlock()
		if busy {
			continue
		}
		if ok {
			// Recorded first: a prompt racing with the removal is refused
			// rather than sent to a sprite about to go.
			if removed, err := r.db.SpriteRemoved(ctx, name); err != nil || !removed {
				if err != nil {
					r.log.Error("recording a removed sprite", "session", name, "err", err)
				}
				continue // or it took a prompt since: it lives on
			}
			r.log.Info("removing a finished session's sprite (retention)", "session", name, "ended", end.UpdatedAt)
		} else {
			r.log.Info("removing orphaned sprite", "sprite", name)
		}
		if err := r.backend.Delete(ctx, name); err != nil {
			r.log.Error("removing sprite", "sprite", name, "err", err)
		}
	}
	if r.Layers() {
		got, err := local.CollectLayers(r.cfg.DataDir, r.cfg.LayerRetention)
		for _, l := range got {
			if l.Removed {
				r.log.Info("removed an unused package layer", "layer", l.Key, "last_used", l.LastUsed)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Enqueue asks for a session's pending work to run: provisioning if its
// sprite is not ready, then its pending turn. One job per session at a
// time; a session enqueued while active is looked at again afterwards.
func (r *Runner) Enqueue(sessionID string) {
	var user string // read before the lock: a query
	if s, err := r.db.GetSession(context.Background(), "", sessionID); err == nil {
		user = s.UserID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return // the turn stays pending; the next start runs it
	}
	j := r.jobs[sessionID]
	switch {
	case j == nil:
		j = &job{idle: make(chan struct{}), user: user}
		r.jobs[sessionID] = j
	case j.gone || j.queued:
		return
	case j.active:
		j.again = true
		return
	}
	j.queued = true
	r.queue = append(r.queue, sessionID)
	r.cond.Signal()
}

// next blocks until a queued session can run on this worker.
func (r *Runner) next() (string, *job, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.queue) == 0 && !r.closed {
		r.cond.Wait()
	}
	if r.closed {
		return "", nil, false
	}
	// Fair slots: the queued session whose owner runs the fewest now goes
	// first (the earliest of those), so one account's queue cannot hold
	// every slot while another's session waits; alone, a user gets them all.
	pick := 0
	for i, q := range r.queue {
		if r.runningBy[r.jobs[q].user] < r.runningBy[r.jobs[r.queue[pick]].user] {
			pick = i
		}
	}
	id := r.queue[pick]
	r.queue = slices.Delete(r.queue, pick, pick+1)
	j := r.jobs[id]
	j.queued, j.active = false, true
	r.runningBy[j.user]++
	j.ctx, j.cancel = context.WithCancelCause(context.Background())
	j.intr = make(chan struct{})
	if j.gone {
		j.cancel(errTerminated)
	}
	return id, j, true
}

func (r *Runner) work() {
	defer r.workers.Done()
	for {
		id, j, ok := r.next()
		if !ok {
			return
		}
		if j.ctx.Err() == nil {
			r.runJob(j.ctx, id, j.intr)
		}
		j.cancel(nil)
		r.mu.Lock()
		j.active = false
		if r.runningBy[j.user]--; r.runningBy[j.user] <= 0 {
			delete(r.runningBy, j.user)
		}
		if j.again && !j.gone && !r.closed {
			j.again, j.queued = false, true
			r.queue = append(r.queue, id)
			r.cond.Signal()
		} else {
			delete(r.jobs, id)
			close(j.idle)
		}
		r.mu.Unlock()
	}
}

// outcome labels a metric: "ok" or "failed".
func outcome(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// QueueDepth is how many sessions wait for a run slot; Running how many
// have one (provisioning or running a turn).
func (r *Runner) QueueDepth() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.runningBy {
		n += c
	}
	return n
}

// SessionSprite is the session's sprite, for reading its files; a 410
// when it no longer exists (or never did).
func (r *Runner) SessionSprite(ctx context.Context, sess *store.Session) (sprite.Sprite, error) {
	sp, err := r.backend.Get(ctx, sess.ID, spriteOptions(sess.Resources))
	if errors.Is(err, sprite.ErrNotFound) {
		return nil, store.Errorf(store.Gone, "Session backend is no longer available; start a new session.")
	}
	return sp, err
}

// CheckSprite records that user's finished session's remote sprite
// vanished (deleted outside aod), so that its next prompt gets the
// contract's 409 rather than a turn that fails. Local sprites only go by
// aod's hand: nothing to check, not even a query.
func (r *Runner) CheckSprite(ctx context.Context, userID, id string) {
	if r.mode != SandboxSprites {
		return
	}
	if sess, err := r.db.GetSession(ctx, userID, id); err != nil || !store.TerminalStatus(sess.Status) {
		return // not the user's (the prompt answers 404), or not finished (its sprite is in use)
	}
	if _, err := r.backend.Get(ctx, id, sprite.Options{}); errors.Is(err, sprite.ErrNotFound) {
		if _, err := r.db.SpriteRemoved(ctx, id); err != nil {
			r.log.Error("recording a vanished sprite", "session", id, "err", err)
		}
	}
}

// diffLimit bounds how long computing a session's diff may take.
const diffLimit = 2 * time.Minute

// SessionDiff writes to w the unified diff of each of the session's
// repositories against the commit it was cloned at, computed by git inside
// the sprite (the repositories are the agent's: nothing of theirs runs on
// the host), with no network. A 410 when the sprite is gone.
func (r *Runner) SessionDiff(ctx context.Context, sess *store.Session, w io.Writer) error {
	opts := spriteOptions(sess.Resources)
	opts.Network = sprite.Network{Limited: true}
	sp, err := r.backend.Get(ctx, sess.ID, opts)
	if errors.Is(err, sprite.ErrNotFound) {
		return store.Errorf(store.Gone, "Session backend is no longer available; start a new session.")
	}
	if err != nil {
		return err
	}
	var script strings.Builder
	for _, res := range sess.Resources {
		script.WriteString("(\n" + diffScript(mountPath(res)) + ")\n")
	}
	if script.Len() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, diffLimit)
	defer cancel()
	var stderr cmdout.Bounded
	stderr.Head, stderr.Tail = 4<<10, 4<<10
	p, err := sp.Start(ctx, sprite.ExecRequest{Argv: []string{"sh", "-c", script.String()}, Dir: sprite.HomeDir,
		Env: []string{"PATH=" + sprite.DefaultPath, "HOME=" + sprite.HomeDir, "GIT_TERMINAL_PROMPT=0"}, Stdout: w, Stderr: &stderr})
	if err != nil {
		return err
	}
	st, _, err := r.supervise(ctx, p, diffLimit, nil, nil)
	if err == nil && st.Code != 0 {
		head, tail, _ := stderr.Text()
		r.log.Warn("computing a session's diff", "session", sess.ID, "exit", st.Code, "stderr", head+tail)
	}
	return err
}

// Interrupt stops the running turn of a session whose interrupt the store
// has just recorded: TERM, then KILL after the grace, and the turn ends as
// interrupted with the session kept for the next prompt. A turn that has
// not started yet never does (the store's record stops it).
func (r *Runner) Interrupt(sessionID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j := r.jobs[sessionID]; j != nil && j.active {
		select {
		case <-j.intr:
		default:
			close(j.intr)
		}
	}
}

// Terminate stops a session the store has just marked terminated: its
// provisioning or running turn is killed at once (the whole process
// group). Its sprite stays, for its files, until the session is deleted
// or SpriteRetention has passed.
func (r *Runner) Terminate(sessionID string) { r.stop(sessionID, errTerminated) }

// Delete removes a deleted session's sprite (in the background).
func (r *Runner) Delete(sessionID string) { r.stop(sessionID, errDeleted) }

func (r *Runner) stop(id string, cause error) {
	r.mu.Lock()
	var idle chan struct{}
	if j := r.jobs[id]; j != nil {
		j.gone = true
		if j.active {
			j.cancel(cause)
			idle = j.idle
		} else {
			// Still queued: no worker will pick it up now, so drop it here
			// (a worker's next() is the only other place that would).
			r.queue = slices.DeleteFunc(r.queue, func(q string) bool { return q == id })
			delete(r.jobs, id)
			close(j.idle)
		}
	}
	if cause == errTerminated {
		// The sprite can run nothing more, but its files stay readable
		// until the session is deleted or the retention removes it.
		r.mu.Unlock()
		return
	}
	closed := r.closed
	if !closed {
		r.bg.Add(1)
	}
	r.mu.Unlock()
	remove := func() {
		if idle != nil {
			<-idle // the job has killed its processes and written its last row
		}
		if err := r.backend.Delete(context.Background(), id); err != nil {
			r.log.Error("removing sprite", "session", id, "err", err)
		}
	}
	if closed {
		remove() // Shutdown is waiting for the background work already
		return
	}
	go func() {
		defer r.bg.Done()
		remove()
	}()
}

// Shutdown stops taking jobs, lets running turns finish for up to grace,
// then kills them and records them failed ("server shut down during the
// turn"). It returns when every job has ended, or with ctx's error.
func (r *Runner) Shutdown(ctx context.Context, grace time.Duration) error {
	r.mu.Lock()
	if !r.closed {
		close(r.stopSweep)
	}
	r.closed = true
	r.cond.Broadcast()
	// Queued jobs will not run in this process (their turns stay pending
	// for the next start): nothing may wait for them to go idle.
	for id, j := range r.jobs {
		if !j.active {
			delete(r.jobs, id)
			close(j.idle)
		}
	}
	r.queue = nil
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.workers.Wait()
		r.bg.Wait()
		r.egress.flush() // the last connections of the last turns
		if r.local != nil {
			r.local.Close()
		}
		close(done)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	r.mu.Lock()
	for _, j := range r.jobs {
		if j.active {
			j.cancel(errShutdown)
		}
	}
	r.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runJob does a session's pending work: provisioning when its sprite is
// not ready, then its next pending turn.
func (r *Runner) runJob(ctx context.Context, id string, intr <-chan struct{}) {
	dbctx := context.WithoutCancel(ctx)
	sess, turn, err := r.db.NextTurn(dbctx, id)
	if err != nil {
		if store.ErrorCode(err) != store.NotFound {
			r.log.Error("reading session", "session", id, "err", err)
		}
		return
	}
	r.mu.Lock()
	dt := r.resume[id]
	delete(r.resume, id)
	r.mu.Unlock()
	if dt != nil && sess.Status == store.StatusRunning {
		r.resumeTurn(ctx, sess, dt, intr)
		return
	}
	if sess.Status != store.StatusPending {
		return
	}
	if turn == nil {
		r.log.Warn("pending session without a pending turn", "session", id)
		return
	}
	var prep *prepared // nil: the turn looks the sprite up itself
	if sess.ProvisionState != store.ProvisionDone {
		var ok bool
		start := time.Now()
		prep, ok = r.provision(ctx, sess)
		metrics.ProvisionSeconds.WithLabelValues(outcome(ok)).Observe(time.Since(start).Seconds())
		if !ok {
			return
		}
	}
	r.runTurn(ctx, sess, turn, prep, intr)
}
