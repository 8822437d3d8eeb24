// Command aod runs AI coding agents on demand behind an HTTP API.
// main.go only wires commands to the store and the server.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aod/aod/fakemodel"
	"github.com/aod/aod/internal/metrics"
	"github.com/aod/aod/runner"
	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/server"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/aod/aod/ui"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.Code // aod run: the turn's exit code
		}
		if err.Error() != "" {
			fmt.Fprintln(os.Stderr, "aod:", err)
		}
		os.Exit(code)
	}
}

// Defaults that work with zero configuration.
const (
	defaultDataDir       = "./aod-data"
	defaultListen        = "127.0.0.1:8777"
	defaultShutdownGrace = 30 * time.Second
)

// run is the whole program, callable from tests end to end.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var dataDir string
	root := &cobra.Command{
		Use:           "aod",
		Short:         "Agents on demand: run AI coding agents behind an HTTP API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.Version = versionString() // aod --version
	root.SetVersionTemplate("aod {{.Version}}\n")
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&dataDir, "data-dir", envOr(getenv, "AOD_DATA_DIR", defaultDataDir),
		"directory holding the database, the encryption key and the sprites (env AOD_DATA_DIR)")
	createStore := func(ctx context.Context) (*store.DB, error) {
		return store.Open(ctx, dataDir, store.Options{EncryptionKey: getenv("AOD_ENCRYPTION_KEY")})
	}
	// Every command but serve works on a data dir serve made: run from the
	// wrong directory, it says so instead of making a new, empty one (whose
	// tokens the server would reject).
	openStore := func(ctx context.Context) (*store.DB, error) {
		if err := existingDataDir(dataDir); err != nil {
			return nil, err
		}
		return createStore(ctx)
	}

	root.AddCommand(serveCmd(getenv, createStore, &dataDir, stdout, stderr))
	root.AddCommand(tokenCmd(openStore, stdout))
	root.AddCommand(userCmd(openStore, stdout))
	root.AddCommand(fakeModelCmd(getenv, stdout, stderr))
	root.AddCommand(environmentsCmd(&dataDir, stdout))
	root.AddCommand(runCmd(getenv, stdout, stderr))
	root.AddCommand(sessionsCmd(getenv, stdout, stderr))
	root.AddCommand(agentsCmd(getenv, stdout))
	root.AddCommand(runtimesCmd(getenv, &dataDir, stdout, stderr))
	root.AddCommand(&cobra.Command{
		Use:   "backup DEST_DIR",
		Short: "Write a consistent copy of the database and the key file (safe while the server runs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.Backup(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "backup written to %s (%s and %s; keep the key file: without it every secret is lost)\n",
				args[0], store.DBFile, store.KeyFile)
			return nil
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(stdout, "aod", versionString())
		},
	})
	return root.ExecuteContext(ctx)
}

// parsePrefixes reads --trusted-proxy values: CIDRs, or addresses (one
// host each).
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxy %q: not an address or CIDR", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// serveMetrics serves the Prometheus metrics on their own listener (off the
// public API): what the runner observes, and the server's state read at
// each scrape.
func serveMetrics(listen string, db *store.DB, run *runner.Runner, streams *sse.Hub) (stop func(), addr string, err error) {
	set := metrics.New()
	set.Labelled("aod_sessions", "Sessions, by status.", "status", func() map[string]float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		counts, err := db.SessionCounts(ctx)
		out := map[string]float64{}
		if err != nil {
			return out
		}
		for _, st := range []string{store.StatusPending, store.StatusRunning, store.StatusCompleted, store.StatusFailed, store.StatusTerminated} {
			out[st] = float64(counts[st])
		}
		return out
	})
	set.Labelled("aod_webhook_deliveries", "Webhook deliveries, by status (pending, succeeded, failed).", "status", func() map[string]float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		counts, err := db.DeliveryCounts(ctx)
		out := map[string]float64{}
		if err != nil {
			return out
		}
		for _, st := range []string{store.DeliveryPending, store.DeliverySucceeded, store.DeliveryFailed} {
			out[st] = float64(counts[st])
		}
		return out
	})
	set.Gauge("aod_queue_depth", "Sessions waiting for a run slot.", func() float64 { return float64(run.QueueDepth()) })
	set.Gauge("aod_running_sprites", "Sessions holding a run slot (provisioning or running a turn).", func() float64 { return float64(run.Running()) })
	set.Gauge("aod_open_streams", "Event streams open (API and web UI).", func() float64 { n, _ := streams.Open(""); return float64(n) })
	set.Counter("aod_events_appended_total", "Rows appended to sessions' event logs by this process.", func() float64 { return float64(db.EventsAppended()) })
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, "", fmt.Errorf("--metrics-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", set.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, ln.Addr().String(), nil
}

// newLogger writes the server's log to w as text or JSON lines.
func newLogger(format string, w io.Writer) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// existingDataDir refuses a data dir that holds no database.
func existingDataDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); err != nil {
		return fmt.Errorf("no aod data dir at %s: start `aod serve` there first or pass --data-dir", dir)
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

// noLimit maps a limit flag's 0 ("no limit") to sse.Config's -1 (its 0
// takes the default).
func noLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// serveOptions are serve's flags; each also reads an AOD_* variable.
type serveOptions struct {
	listen             string
	sandbox            string
	maxConcurrent      int
	maxRunning         int
	outputLimit        size
	minFreeDisk        size
	heartbeat          time.Duration
	staleAfter         time.Duration
	streamWriteTimeout time.Duration
	maxDownload        size
	maxStreamsPerUser  int
	maxStreams         int
	killGrace          time.Duration
	shutdownGrace      time.Duration
	provisionTimeout   time.Duration
	sweepInterval      time.Duration
	layerRetention     time.Duration
	spriteRetention    time.Duration
	logFormat          string
	trustedProxies     []string
	metricsListen      string
	runtimeDir         string
	fakeModel          bool
	fakeModelScript    string
	endpoints          runner.ModelEndpoints
	registration       string
	secureCookies      bool
	egressAllow        []string
	passEnvNames       []string // --pass-env
	passEnv            passEnv  // what they resolve to
	diskLimit          size
	memoryLimit        size
	pidsLimit          int
	warmSprites        int
	sprites            spritesOptions
}

func serveCmd(getenv func(string) string, openStore func(context.Context) (*store.DB, error), dataDir *string, stdout, stderr io.Writer) *cobra.Command {
	var o serveOptions
	var envErr error
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API and run sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if envErr != nil {
				return envErr
			}
			if o.logFormat != "text" && o.logFormat != "json" {
				return fmt.Errorf("--log-format must be text or json, got %q", o.logFormat)
			}
			if _, err := parsePrefixes(o.trustedProxies); err != nil {
				return err
			}
			var err error
			if o.passEnv, err = resolvePassEnv(o.passEnvNames, getenv); err != nil {
				return err
			}
			err = serve(cmd.Context(), o, openStore, *dataDir, stdout, stderr)
			if err != nil && cmd.Context().Err() != nil {
				return nil // stopped (a signal) while starting: not a failure
			}
			return err
		},
	}
	f := cmd.Flags()
	env := envReader{getenv: getenv, err: &envErr}
	f.StringVar(&o.listen, "listen", env.str("AOD_LISTEN", defaultListen), "address to listen on (env AOD_LISTEN)")
	f.StringVar(&o.sandbox, "sandbox", env.str("AOD_SANDBOX", runner.SandboxAuto), "sprite sandbox: auto (bubblewrap when it works), bwrap (required), none, or sprites (every session on a Fly.io Sprite; see --sprites-token) (env AOD_SANDBOX)")
	spritesFlags(f, env, &o.sprites)
	f.IntVar(&o.maxConcurrent, "max-concurrent-sessions", env.int("AOD_MAX_CONCURRENT_SESSIONS", sessions.DefaultMaxConcurrent), "default per-user limit of pending+running sessions (env AOD_MAX_CONCURRENT_SESSIONS)")
	f.IntVar(&o.maxRunning, "max-running", env.int("AOD_MAX_RUNNING", runner.DefaultMaxRunning), "sessions provisioning or running at once on this server, shared fairly between users who wait (env AOD_MAX_RUNNING)")
	o.outputLimit = env.size("AOD_OUTPUT_LIMIT", runner.DefaultOutputLimit)
	f.Var(&o.outputLimit, "output-limit", "output a session may produce, in bytes or e.g. 512MiB (env AOD_OUTPUT_LIMIT)")
	o.minFreeDisk = env.size("AOD_MIN_FREE_DISK", sessions.DefaultMinFreeDisk)
	f.Var(&o.minFreeDisk, "min-free-disk", "refuse new sessions (503) while the data dir's disk has less free, e.g. 2GiB; 0 = no check (env AOD_MIN_FREE_DISK)")
	f.DurationVar(&o.heartbeat, "heartbeat", env.dur("AOD_HEARTBEAT", sse.DefaultHeartbeat), "SSE heartbeat interval (env AOD_HEARTBEAT)")
	f.DurationVar(&o.staleAfter, "stale-after", env.dur("AOD_STALE_AFTER", sse.DefaultStale), "end a stream with `stale` after this long without output (env AOD_STALE_AFTER)")
	f.DurationVar(&o.streamWriteTimeout, "stream-write-timeout", env.dur("AOD_STREAM_WRITE_TIMEOUT", sse.DefaultWriteTimeout), "a stream whose client takes no bytes for this long is closed; the client resumes with Last-Event-ID (env AOD_STREAM_WRITE_TIMEOUT)")
	o.maxDownload = env.size("AOD_MAX_DOWNLOAD", sessions.DefaultMaxDownload)
	f.Var(&o.maxDownload, "max-download", "largest sprite file GET /sessions/{id}/files/content serves, e.g. 256MiB (env AOD_MAX_DOWNLOAD)")
	f.IntVar(&o.maxStreamsPerUser, "max-streams-per-user", env.int("AOD_MAX_STREAMS_PER_USER", sse.DefaultMaxPerUser), "event streams (API and web UI) one user may hold open at once; more get 429; 0 = no limit (env AOD_MAX_STREAMS_PER_USER)")
	f.IntVar(&o.maxStreams, "max-streams", env.int("AOD_MAX_STREAMS", sse.DefaultMaxTotal), "event streams open at once on this server (each holds a connection: keep the open-files limit above it); more get 503 with Retry-After; 0 = no limit (env AOD_MAX_STREAMS)")
	f.DurationVar(&o.killGrace, "kill-grace", env.dur("AOD_KILL_GRACE", runner.DefaultKillGrace), "time between TERM and KILL when a turn times out (env AOD_KILL_GRACE)")
	f.DurationVar(&o.shutdownGrace, "shutdown-grace", env.dur("AOD_SHUTDOWN_GRACE", defaultShutdownGrace), "on SIGTERM, how long running turns may finish (env AOD_SHUTDOWN_GRACE)")
	f.DurationVar(&o.provisionTimeout, "provision-timeout", env.dur("AOD_PROVISION_TIMEOUT", runner.DefaultProvisionTimeout), "time limit for provisioning a sprite (env AOD_PROVISION_TIMEOUT)")
	f.DurationVar(&o.sweepInterval, "sweep-interval", env.dur("AOD_SWEEP_INTERVAL", runner.DefaultSweepInterval), "how often leftover sprites of deleted or terminated sessions are removed (env AOD_SWEEP_INTERVAL)")
	f.DurationVar(&o.layerRetention, "layer-retention", env.dur("AOD_LAYER_RETENTION", runner.DefaultLayerRetention), "how long an environment's package layer no sprite uses is kept before the sweep removes it (env AOD_LAYER_RETENTION)")
	f.StringArrayVar(&o.trustedProxies, "trusted-proxy", env.list("AOD_TRUSTED_PROXY"), "a reverse proxy's address or CIDR whose X-Forwarded-For and X-Forwarded-Proto are believed (login and sign-up throttles then count the real client); repeatable, comma-separated in the variable (env AOD_TRUSTED_PROXY)")
	f.StringVar(&o.metricsListen, "metrics-listen", env.str("AOD_METRICS_LISTEN", ""), "serve Prometheus metrics (aod_*) at http://ADDR/metrics; off when empty (env AOD_METRICS_LISTEN)")
	f.StringVar(&o.logFormat, "log-format", env.str("AOD_LOG_FORMAT", "text"), "log lines as text (key=value) or json, one object per line (env AOD_LOG_FORMAT)")
	f.DurationVar(&o.spriteRetention, "sprite-retention", env.dur("AOD_SPRITE_RETENTION", runner.DefaultSpriteRetention), "how long a finished (completed, failed or terminated) session keeps its sprite: its files stay downloadable and a completed one takes prompts; after it, the sweep removes the sprite (env AOD_SPRITE_RETENTION)")
	runtimeDirFlag(f, env, &o.runtimeDir)
	f.BoolVar(&o.fakeModel, "fake-model", env.bool("AOD_FAKE_MODEL"), "run the fake model API in-process and point every runtime at it: offline runs, no model keys (env AOD_FAKE_MODEL=1)")
	f.StringVar(&o.fakeModelScript, "fake-model-script", env.str("AOD_FAKE_MODEL_SCRIPT", ""), "script for --fake-model replies (env AOD_FAKE_MODEL_SCRIPT)")
	f.StringVar(&o.endpoints.Anthropic, "anthropic-base-url", env.str("AOD_ANTHROPIC_BASE_URL", ""), "model API for claude (and opencode's anthropic provider) (env AOD_ANTHROPIC_BASE_URL)")
	f.StringVar(&o.endpoints.OpenAI, "openai-base-url", env.str("AOD_OPENAI_BASE_URL", ""), "model API for codex (and opencode's openai provider) (env AOD_OPENAI_BASE_URL)")
	f.StringVar(&o.endpoints.Gemini, "gemini-base-url", env.str("AOD_GEMINI_BASE_URL", ""), "model API for gemini (and opencode's google provider) (env AOD_GEMINI_BASE_URL)")
	o.diskLimit = env.size("AOD_SPRITE_DISK_LIMIT", runner.DefaultDiskBytes)
	f.Var(&o.diskLimit, "sprite-disk-limit", "files a sprite may hold, e.g. 10GiB; a command past it is killed and its turn fails (env AOD_SPRITE_DISK_LIMIT)")
	o.memoryLimit = env.size("AOD_SPRITE_MEMORY_LIMIT", runner.DefaultMemoryBytes)
	f.Var(&o.memoryLimit, "sprite-memory-limit", "memory a sprite may use, e.g. 4GiB (a cgroup where aod can make one, else per process) (env AOD_SPRITE_MEMORY_LIMIT)")
	f.IntVar(&o.warmSprites, "warm-sprites", env.int("AOD_WARM_SPRITES", runner.DefaultWarmSprites), "bubblewrap sprites kept started ahead so a new session's first command starts at once (a few MB each); 0 = none (env AOD_WARM_SPRITES)")
	f.IntVar(&o.pidsLimit, "sprite-pids-limit", env.int("AOD_SPRITE_PIDS_LIMIT", runner.DefaultProcesses), "processes a sprite may run at once (env AOD_SPRITE_PIDS_LIMIT)")
	f.StringArrayVar(&o.egressAllow, "egress-allow", env.list("AOD_EGRESS_ALLOW"), "a host, IP or CIDR sprites may reach although it is loopback, link-local or private (an internal mirror); limited policies allow it too; repeatable, comma-separated in the variable (env AOD_EGRESS_ALLOW)")
	f.StringVar(&o.registration, "registration", env.str("AOD_REGISTRATION", ui.RegistrationOpen), "web UI sign-up: open (anyone may create an account) or closed (create users with: aod user set-password) (env AOD_REGISTRATION)")
	f.StringArrayVar(&o.passEnvNames, "pass-env", env.list("AOD_PASS_ENV"), "a variable of aod's own environment (e.g. ANTHROPIC_API_KEY) handed to every session of every user, below their own secrets and env vars: for a single-user machine; repeatable, comma-separated in the variable; off by default (env AOD_PASS_ENV)")
	f.BoolVar(&o.secureCookies, "secure-cookies", env.bool("AOD_SECURE_COOKIES"), "mark web UI cookies Secure even on requests that don't look like HTTPS (env AOD_SECURE_COOKIES=1)")
	return cmd
}

// envReader reads typed defaults from the environment, remembering the
// first malformed value so the command can refuse to start.
type envReader struct {
	getenv func(string) string
	err    *error
}

func (e envReader) str(key, def string) string { return envOr(e.getenv, key, def) }

func (e envReader) int(key string, def int) int {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && *e.err == nil {
		*e.err = fmt.Errorf("%s=%q: not an integer", key, v)
	}
	return n
}

// list reads a comma-separated list.
func (e envReader) list(key string) []string {
	var out []string
	for _, v := range strings.Split(e.getenv(key), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (e envReader) bool(key string) bool {
	switch v := e.getenv(key); v {
	case "", "0", "false":
		return false
	case "1", "true":
		return true
	default:
		if *e.err == nil {
			*e.err = fmt.Errorf("%s=%q: want 1 or 0", key, v)
		}
		return false
	}
}

func (e envReader) dur(key string, def time.Duration) time.Duration {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && *e.err == nil {
		*e.err = fmt.Errorf("%s=%q: not a duration (e.g. 15s)", key, v)
	}
	return d
}

func serve(ctx context.Context, o serveOptions, openStore func(context.Context) (*store.DB, error), dataDir string, stdout, stderr io.Writer) error {
	logger := newLogger(o.logFormat, stderr)
	db, err := openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetHostEnv(o.passEnv.vars)
	o.passEnv.log(logger)
	if o.fakeModel {
		url, stop, err := startFakeModel(o.fakeModelScript)
		if err != nil {
			return err
		}
		defer stop()
		// The fake answers every API; explicit endpoints still win.
		for _, ep := range []*string{&o.endpoints.Anthropic, &o.endpoints.OpenAI, &o.endpoints.Gemini} {
			if *ep == "" {
				*ep = url
			}
		}
		logger.Info("fake model API running; runtimes use it and need no model keys", "url", url)
	}
	backend, err := spritesBackend(o.sandbox, o.sprites, logger)
	if err != nil {
		return err
	}
	run, err := runner.New(db, runner.Config{
		Backend: backend,
		DataDir: dataDir, Sandbox: o.sandbox, MaxRunning: o.maxRunning, OutputLimit: int64(o.outputLimit),
		KillGrace: o.killGrace, ProvisionTimeout: o.provisionTimeout, SweepInterval: o.sweepInterval, Logger: logger,
		LayerRetention: o.layerRetention, SpriteRetention: o.spriteRetention,
		RuntimeDir: o.runtimeDir, ModelEndpoints: o.endpoints, EgressAllow: o.egressAllow,
		Limits:      runner.Limits{DiskBytes: uint64(o.diskLimit), MemoryBytes: uint64(o.memoryLimit), Processes: uint64(max(o.pidsLimit, 0))},
		WarmSprites: cmp.Or(o.warmSprites, -1), // the flag's 0 is none; the runner's is its default
	})
	if err != nil {
		return err
	}
	serving := false
	defer func() {
		if !serving { // stopped before serving: its warm sprites and mounts go
			run.Shutdown(context.Background(), 0)
		}
	}()
	sess := sessions.New(db, run, store.SessionPolicy{MaxConcurrent: o.maxConcurrent, Keyless: o.endpoints.Keyless},
		sessions.MinFreeDisk(int64(o.minFreeDisk)))
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err == nil && o.maxStreams > 0 && uint64(o.maxStreams)+256 > nofile.Cur {
		logger.Warn("the open-files limit is too low for --max-streams: connections beyond it fail before they are counted; raise it (ulimit -n) or lower --max-streams",
			"open_files", nofile.Cur, "max_streams", o.maxStreams)
	}
	trusted, _ := parsePrefixes(o.trustedProxies) // checked before serve
	var allow []egress.Rule
	for _, s := range o.egressAllow {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			r, err := egress.ParseRule(part)
			if err != nil {
				return fmt.Errorf("--egress-allow %q: %w", part, err)
			}
			allow = append(allow, r)
		}
	}
	streams := sse.NewHub(db, sse.Config{Heartbeat: o.heartbeat, Stale: o.staleAfter, WriteTimeout: o.streamWriteTimeout,
		MaxPerUser: noLimit(o.maxStreamsPerUser), MaxTotal: noLimit(o.maxStreams), Logger: logger})
	pages, err := ui.New(db, sess, ui.Config{
		Registration: o.registration, Streams: streams, MaxDownload: int64(o.maxDownload), TrustedProxies: trusted, Logger: logger, Secure: o.secureCookies,
		EgressAllow: allow, Sandbox: run.Sandbox(),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	if err := run.Start(ctx); err != nil {
		ln.Close()
		if ctx.Err() != nil {
			return nil // stopped while starting: not an error
		}
		return err
	}
	// Streams end when this context does, after the runner has recorded
	// how every running turn ended.
	baseCtx, cancelStreams := context.WithCancel(context.Background())
	defer cancelStreams()
	srv := &http.Server{
		Handler: server.New(db, sess, server.Config{
			Limits:  run.Limits(),
			Version: versionString(), Logger: logger, Streams: streams, UI: pages, MaxDownload: int64(o.maxDownload), EgressAllow: allow,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	fmt.Fprintf(stdout, "aod %s listening on http://%s (data dir %s, sandbox %s)\n", versionString(), ln.Addr(), dataDir, run.Sandbox())
	fmt.Fprintf(stdout, "create an API token with: aod --data-dir %s token create --user NAME\n", dataDir)
	fmt.Fprintf(stdout, "web UI at http://%s/ (registration %s)\n", ln.Addr(), o.registration)
	if o.metricsListen != "" {
		stop, addr, err := serveMetrics(o.metricsListen, db, run, streams)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(stdout, "metrics at http://%s/metrics\n", addr)
	}
	hooksCtx, stopHooks := context.WithCancel(context.Background())
	defer stopHooks()
	go (&server.Dispatcher{DB: db, Allow: allow, Log: logger}).Run(hooksCtx)
	errc := make(chan error, 1)
	serving = true
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		run.Shutdown(context.Background(), 0)
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: no new requests; running turns get a grace period", "grace", o.shutdownGrace)
	shutDone := make(chan struct{})
	go func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace+5*time.Second)
		defer cancel()
		srv.Shutdown(shutCtx) // stops accepting at once; waits for requests in flight
		close(shutDone)
	}()
	run.Shutdown(context.Background(), o.shutdownGrace)
	// Streams of sessions that just ended see their terminal event; give
	// them a moment, then close whatever is still open.
	streamsCtx, cancelWait := context.WithTimeout(context.Background(), time.Second)
	streams.Shutdown(streamsCtx)
	cancelWait()
	cancelStreams() // and those run in their handlers
	select {
	case <-shutDone:
	case <-time.After(time.Second):
	}
	srv.Close()
	return nil
}

func tokenCmd(openStore func(context.Context) (*store.DB, error), stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}

	var user, name string
	var expiresIn time.Duration
	var admin bool
	create := &cobra.Command{
		Use:   "create --user NAME [--name LABEL] [--expires-in DURATION] [--admin]",
		Short: "Create an API token (and the user, if new); the token is the last line printed",
		Long: `Create an API token (and the user, if new); the token is the last line printed.

With --admin the token is an operator key: besides acting as its user, it
may create users and their keys over HTTP (POST /admin/api-keys), so a
dashboard can hold one key per person. Only this command makes one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := db.EnsureUser(cmd.Context(), user)
			if err != nil {
				return err
			}
			var exp *time.Time
			if expiresIn > 0 {
				t := time.Now().Add(expiresIn)
				exp = &t
			}
			create, kind := db.CreateAPIKey, "token"
			if admin {
				create, kind = db.CreateOperatorKey, "operator token"
			}
			k, raw, err := create(cmd.Context(), u.ID, name, exp)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "created %s %s… for user %s (shown once; store it now)\n", kind, k.Prefix, u.Username)
			fmt.Fprintln(stdout, raw)
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "username (created if it does not exist)")
	create.Flags().StringVar(&name, "name", "", "label for the token")
	create.Flags().DurationVar(&expiresIn, "expires-in", 0, "token lifetime, e.g. 720h (default: never expires)")
	create.Flags().BoolVar(&admin, "admin", false, "make an operator key, which may also create users and their keys (POST /admin/api-keys)")
	create.MarkFlagRequired("user")

	var listUser string
	list := &cobra.Command{
		Use:   "list --user NAME",
		Short: "List a user's tokens by prefix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			u, err := db.UserByName(cmd.Context(), listUser)
			if err != nil {
				return err
			}
			keys, err := db.ListAPIKeys(cmd.Context(), u.ID)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PREFIX\tNAME\tSTATUS\tCREATED\tEXPIRES")
			for _, k := range keys {
				status, expires := "active", "never"
				if !k.Active {
					status = "revoked"
				}
				if k.ExpiresAt != nil {
					expires = store.FormatTime(*k.ExpiresAt)
					if k.Active && !time.Now().Before(*k.ExpiresAt) {
						status = "expired"
					}
				}
				if k.Admin {
					status += ", operator"
				}
				fmt.Fprintf(tw, "%s…\t%s\t%s\t%s\t%s\n", k.Prefix, k.Name, status, store.FormatTime(k.CreatedAt), expires)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&listUser, "user", "", "username")
	list.MarkFlagRequired("user")

	revoke := &cobra.Command{
		Use:   "revoke PREFIX",
		Short: "Revoke the token whose prefix (as `token list` shows it) starts with PREFIX",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			k, err := db.RevokeAPIKeyByPrefix(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked %s…\n", k.Prefix)
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func userCmd(openStore func(context.Context) (*store.DB, error), stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users"}
	cmd.AddCommand(&cobra.Command{
		Use:   "set-quota NAME N",
		Short: "Set a user's limit of pending+running sessions (0 = the server's default)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return fmt.Errorf("N must be a non-negative integer, got %q", args[1])
			}
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.SetUserQuota(cmd.Context(), args[0], n); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s: max concurrent sessions %d\n", args[0], n)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "set-password NAME",
		Short: "Set a user's web UI password, read from the first line of stdin (creates the user if new)",
		Long: `Set a user's web UI password, read from the first line of standard input, e.g.

  printf '%s\n' "$PASSWORD" | aod user set-password alice

The user is created if it does not exist yet, so operators of a server with
--registration closed can give people accounts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			password, err := readPassword(cmd.InOrStdin())
			if err != nil {
				return err
			}
			db, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := db.EnsureUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			if err := db.SetPassword(cmd.Context(), args[0], password); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "user %s: web UI password set\n", args[0])
			return nil
		},
	})
	return cmd
}

// readPassword reads the first line of r without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no password on stdin: pipe it in, e.g. printf '%%s\\n' \"$PASSWORD\" | aod user set-password NAME")
	}
	return line, nil
}

// startFakeModel serves the fake model API on a loopback port (reachable
// from sprites: they share the host's network) and returns its URL.
func startFakeModel(scriptPath string) (string, func(), error) {
	var sc *fakemodel.Script
	if scriptPath != "" {
		var err error
		if sc, err = fakemodel.LoadScript(scriptPath); err != nil {
			return "", nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: fakemodel.New(sc), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

func fakeModelCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	var listen, script string
	cmd := &cobra.Command{
		Use:   "fake-model [--listen ADDR] [--script FILE]",
		Short: "Serve a scripted fake of the Anthropic, OpenAI and Gemini APIs for offline agent runs",
		Long: `Serve a scripted fake of the model APIs the agent CLIs call (Anthropic Messages,
OpenAI Responses and Chat Completions, Gemini generateContent), so Claude Code,
Codex, opencode and Gemini CLI run offline with no model key. Without --script
every request is answered with "fake reply to: <the last user message>".
Point aod serve at it with AOD_ANTHROPIC_BASE_URL, AOD_OPENAI_BASE_URL and
AOD_GEMINI_BASE_URL, or use aod serve --fake-model to run one in-process.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var sc *fakemodel.Script
			if script != "" {
				var err error
				if sc, err = fakemodel.LoadScript(script); err != nil {
					return err
				}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewTextHandler(stderr, nil))
			fake := fakemodel.New(sc)
			srv := &http.Server{
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fake.ServeHTTP(w, r)
					logger.Info("model request", "method", r.Method, "path", r.URL.Path)
				}),
				ReadHeaderTimeout: 10 * time.Second,
			}
			fmt.Fprintf(stdout, "aod fake model API listening on http://%s\n", ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
				shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return srv.Shutdown(shutCtx)
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", envOr(getenv, "AOD_FAKE_MODEL_LISTEN", "127.0.0.1:8778"), "address to listen on (env AOD_FAKE_MODEL_LISTEN)")
	cmd.Flags().StringVar(&script, "script", getenv("AOD_FAKE_MODEL_SCRIPT"), "JSON script of replies (see testdata/fakemodel/example.json; env AOD_FAKE_MODEL_SCRIPT)")
	return cmd
}

// environmentsCmd manages what environments keep on disk: their package
// layers.
func environmentsCmd(dataDir *string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "environments", Short: "Manage environments' package layers"}
	var olderThan time.Duration
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Remove the package layers no sprite uses (safe while the server runs)",
		Long: `Remove the environments' package layers that no sprite is made over and
that were last used more than --older-than ago (default: now). A later
session of that environment version builds its layer again. The server
does the same on its own every --sweep-interval, with --layer-retention.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := existingDataDir(*dataDir); err != nil {
				return err
			}
			layers, err := local.CollectLayers(*dataDir, olderThan)
			removed := 0
			for _, l := range layers {
				state := "kept (unused)"
				switch {
				case l.Removed:
					state, removed = "removed", removed+1
				case l.InUse:
					state = "kept (in use)"
				}
				fmt.Fprintf(stdout, "%s  last used %s  %s\n", l.Key, l.LastUsed.UTC().Format(time.RFC3339), state)
			}
			fmt.Fprintf(stdout, "%d of %d package layers removed\n", removed, len(layers))
			return err
		},
	}
	gc.Flags().DurationVar(&olderThan, "older-than", 0, "remove only layers last used longer ago than this, e.g. 24h")
	cmd.AddCommand(gc)
	return cmd
}
