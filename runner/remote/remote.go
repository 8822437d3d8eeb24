// Package remote is the sprite backend that runs sessions on Fly.io
// Sprites (the original service's own sandboxes): one Sprite per session,
// named <prefix><session id>, driven through the service's HTTP and
// WebSocket API (package runner/sprites). Sprites are whole VMs, so what
// the local backend must enforce on the host (file system views, limits,
// the egress proxy) is the service's business here: aod sets the sprite's
// network policy and runs commands.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/runner/sprites"
)

// Config is a remote backend's settings.
type Config struct {
	Client *sprites.Client
	// Prefix starts the name of every Sprite aod makes; List answers only
	// those, so several servers (or other users of the account) can share
	// an organisation.
	Prefix string
	Log    *slog.Logger
	// MaxRunAfterDisconnect is how long a command keeps running once aod's
	// connection to it drops: long enough to cover a restart of aod, which
	// then takes it up again.
	MaxRunAfterDisconnect time.Duration
	// MaxCapacityWait bounds each wait for capacity the service asks for
	// (its Retry-After), so a stage keeps telling the user it is waiting.
	MaxCapacityWait time.Duration
}

// DefaultMaxRunAfterDisconnect covers a restart of aod with room to spare.
const DefaultMaxRunAfterDisconnect = 10 * time.Minute

// Backend runs sprites on the Sprites service.
type Backend struct {
	c   *sprites.Client
	cfg Config
	log *slog.Logger
}

var _ sprite.Backend = (*Backend)(nil)

// New returns a backend over cfg.Client.
func New(cfg Config) *Backend {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRunAfterDisconnect <= 0 {
		cfg.MaxRunAfterDisconnect = DefaultMaxRunAfterDisconnect
	}
	if cfg.MaxCapacityWait <= 0 {
		cfg.MaxCapacityWait = 30 * time.Second
	}
	return &Backend{c: cfg.Client, cfg: cfg, log: cfg.Log}
}

func (b *Backend) spriteName(id string) string { return b.cfg.Prefix + id }

// Create makes the session's Sprite, waiting while the service says it
// has no capacity (telling the stage so), and the directories every
// sprite offers.
func (b *Backend) Create(ctx context.Context, id string, opts sprite.Options) (sprite.Sprite, error) {
	name := b.spriteName(id)
	for {
		_, err := b.c.Create(ctx, name)
		wait, full := sprites.Capacity(err)
		if !full {
			if err != nil {
				return nil, err
			}
			break
		}
		wait = min(max(wait, time.Second), b.cfg.MaxCapacityWait)
		sprite.Progress(ctx, fmt.Sprintf("waiting for capacity on Sprites (%s); trying again in %s", capacityReason(err), wait.Round(time.Second)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
	// The service's defaults until the network_policy stage sets the
	// session's (after the agent CLI is installed from npm); a sprite made
	// before keeps no older policy.
	s := &remoteSprite{b: b, id: id, name: name, mounts: opts.Mounts}
	if err := s.SetNetwork(ctx, sprite.Network{}); err != nil {
		return nil, err
	}
	for _, dir := range []string{sprite.HomeDir, sprite.WorkspaceDir} {
		if err := s.mkdir(ctx, dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// capacityReason is what the service said about its capacity.
func capacityReason(err error) string {
	var ae *sprites.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.Message != "":
			return ae.Message
		case ae.Code != "":
			return ae.Code
		}
	}
	return "rate limited"
}

// policy is the service's network policy for a session's Network:
// unrestricted is the service's defaults; limited allows the session's
// hosts and its model API's and denies everything else.
func policy(n sprite.Network) []sprites.PolicyRule {
	if !n.Limited {
		return []sprites.PolicyRule{{Include: "defaults"}}
	}
	var rules []sprites.PolicyRule
	seen := map[string]bool{}
	allow := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			rules = append(rules, sprites.PolicyRule{Domain: h, Action: "allow"})
		}
	}
	for _, h := range n.Hosts {
		allow(h)
	}
	for _, m := range n.Models {
		host, _, err := net.SplitHostPort(m)
		if err != nil {
			host = m
		}
		allow(host)
	}
	return append(rules, sprites.PolicyRule{Domain: "*", Action: "deny"})
}

// Get finds the session's Sprite.
func (b *Backend) Get(ctx context.Context, id string, opts sprite.Options) (sprite.Sprite, error) {
	name := b.spriteName(id)
	if _, err := b.c.Get(ctx, name); err != nil {
		if sprites.IsNotFound(err) {
			return nil, sprite.ErrNotFound
		}
		return nil, err
	}
	return &remoteSprite{b: b, id: id, name: name, mounts: opts.Mounts}, nil
}

// Delete removes the session's Sprite; a missing one is not an error.
func (b *Backend) Delete(ctx context.Context, id string) error {
	return b.c.Delete(ctx, b.spriteName(id))
}

// List names the sessions whose Sprites exist (those with aod's prefix).
func (b *Backend) List(ctx context.Context) ([]string, error) {
	all, err := b.c.List(ctx, b.cfg.Prefix)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range all {
		if id, ok := strings.CutPrefix(s.Name, b.cfg.Prefix); ok && id != "" {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// remoteSprite is one session's Sprite.
type remoteSprite struct {
	b        *Backend
	id, name string
	mounts   []string // the repositories' mount paths
}

var (
	_ sprite.Sprite     = (*remoteSprite)(nil)
	_ sprite.Reattacher = (*remoteSprite)(nil)
	_ sprite.Policed    = (*remoteSprite)(nil)
	_ sprite.Killer     = (*remoteSprite)(nil)
	_ sprite.Resumable  = (*process)(nil)
)

func (s *remoteSprite) Name() string { return s.id }

// SetNetwork sets the Sprite's network policy to n.
func (s *remoteSprite) SetNetwork(ctx context.Context, n sprite.Network) error {
	if err := s.b.c.SetNetworkPolicy(ctx, s.name, policy(n)); err != nil {
		return fmt.Errorf("network policy: %w", err)
	}
	return nil
}

// runtimesDir is where a Sprite keeps the agent CLIs aod installs in it:
// the sprite paths under runtimes.MountDir (/aod/runtimes) live there, in
// the home directory the sprite's user may write.
const runtimesDir = sprite.HomeDir + "/.aod/runtimes"

// Path maps the shared mount point of the agent CLIs into the home
// directory; every other path is the same inside the VM.
func (s *remoteSprite) Path(p string) string {
	p = path.Clean(p)
	if rest, ok := strings.CutPrefix(p, "/aod/runtimes"); ok && (rest == "" || rest[0] == '/') {
		return runtimesDir + rest
	}
	return p
}

func (s *remoteSprite) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode) error {
	return s.b.c.WriteFile(ctx, s.name, s.Path(p), data, mode)
}

func (s *remoteSprite) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return s.b.c.ReadFile(ctx, s.name, s.Path(p))
}

// mkdir makes directory p (the API has no mkdir: a placeholder file is
// written with its parents, then removed).
func (s *remoteSprite) mkdir(ctx context.Context, p string) error {
	keep := path.Join(p, ".aod-keep")
	if err := s.b.c.WriteFile(ctx, s.name, keep, nil, 0o644); err != nil {
		return fmt.Errorf("make %s: %w", p, err)
	}
	return s.b.c.Remove(ctx, s.name, keep, false)
}

// inSprite says whether the files API shows p: the sprite's own trees
// (home, workspace, tmp, the repositories' mounts), as on every backend,
// not the rest of the VM.
func (s *remoteSprite) inSprite(p string) bool {
	for _, at := range append([]string{sprite.HomeDir, sprite.WorkspaceDir, sprite.TmpDir}, s.mounts...) {
		if at != "" && (p == at || strings.HasPrefix(p, at+"/")) {
			return true
		}
	}
	return false
}

// notInSprite is the answer for a path the files API does not show.
func notInSprite(p string) error {
	return &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

// Stat describes p from its directory's listing (the API lists, it has no
// stat). The service resolves the directories above p inside the VM: a
// link among them reaches only the VM's own files, never aod's host.
func (s *remoteSprite) Stat(ctx context.Context, p string) (sprite.FileInfo, error) {
	p = path.Clean("/" + p)
	if !s.inSprite(p) {
		return sprite.FileInfo{}, notInSprite(p)
	}
	entries, err := s.b.c.ListDir(ctx, s.name, path.Dir(p), false)
	if err != nil {
		return sprite.FileInfo{}, err
	}
	base := path.Base(p)
	for _, e := range entries {
		if e.Name == base {
			fi := fileInfo(e)
			if fi.Type == sprite.TypeSymlink {
				targets, err := s.linkTargets(ctx, path.Dir(p))
				if err != nil {
					return fi, err
				}
				fi.Target = targets[base]
			}
			return fi, nil
		}
	}
	return sprite.FileInfo{}, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
}

// maxLinkListing bounds what listing a directory's links may print.
const maxLinkListing = 4 << 20

// linkTargets reads the targets of directory dir's symbolic links (the
// service's listing names links but not where they point), by name.
func (s *remoteSprite) linkTargets(ctx context.Context, dir string) (map[string]string, error) {
	var out limitedBuffer
	out.max = maxLinkListing
	proc, err := s.Start(ctx, sprite.ExecRequest{
		Argv: []string{"find", dir, "-mindepth", "1", "-maxdepth", "1", "-type", "l", "-printf", `%f\0%l\0`},
		Dir:  "/", Env: []string{"PATH=" + sprite.DefaultPath}, Stdout: &out,
	})
	if err != nil {
		return nil, err
	}
	if st, err := proc.Wait(); err != nil || st.Code != 0 {
		return nil, fmt.Errorf("reading the links of %s: exit %d, %v", dir, st.Code, err)
	}
	if out.over {
		return nil, fmt.Errorf("reading the links of %s: more than %d bytes", dir, maxLinkListing)
	}
	parts := strings.Split(out.String(), "\x00")
	targets := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		targets[parts[i]] = parts[i+1]
	}
	return targets, nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	strings.Builder
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.Builder.Write(p)
	return len(p), nil
}

func (s *remoteSprite) ReadDir(ctx context.Context, p string) ([]sprite.FileInfo, error) {
	fi, err := s.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if fi.Type != sprite.TypeDir {
		return nil, fmt.Errorf("%s: not a directory", p)
	}
	entries, err := s.b.c.ListDir(ctx, s.name, path.Clean("/"+p), false)
	if err != nil {
		return nil, err
	}
	out := make([]sprite.FileInfo, 0, len(entries))
	var targets map[string]string
	for _, e := range entries {
		fi := fileInfo(e)
		if fi.Type == sprite.TypeSymlink {
			if targets == nil {
				if targets, err = s.linkTargets(ctx, path.Clean("/"+p)); err != nil {
					return nil, err
				}
			}
			fi.Target = targets[fi.Name]
		}
		out = append(out, fi)
	}
	return out, nil
}

// Open reads regular file p; anything else (a link, a directory) is
// described, never opened.
func (s *remoteSprite) Open(ctx context.Context, p string) (io.ReadCloser, sprite.FileInfo, error) {
	fi, err := s.Stat(ctx, p)
	if err != nil {
		return nil, fi, err
	}
	switch fi.Type {
	case sprite.TypeFile:
	case sprite.TypeSymlink:
		return nil, fi, notInSprite(p) // never opened through
	default:
		return nil, fi, fmt.Errorf("%s: not a regular file", p)
	}
	rc, err := s.b.c.OpenFile(ctx, s.name, path.Clean("/"+p))
	return rc, fi, err
}

// fileInfo is the sprite's description of a listing's entry.
func fileInfo(e sprites.Entry) sprite.FileInfo {
	fi := sprite.FileInfo{Name: e.Name, Size: e.Size, Mode: e.Mode.Perm(), ModTime: e.ModTime}
	switch {
	case e.IsDir || e.Type == "dir" || e.Type == "directory":
		fi.Type = sprite.TypeDir
	case e.Type == "symlink" || e.Type == "link":
		fi.Type = sprite.TypeSymlink
	case e.Type == "file" || e.Type == "" || e.Type == "regular":
		fi.Type = sprite.TypeFile
	default:
		fi.Type = sprite.TypeOther
	}
	return fi
}

// Start runs req in the Sprite, detachable: the command survives a
// dropped connection (and a restart of aod) for MaxRunAfterDisconnect.
func (s *remoteSprite) Start(ctx context.Context, req sprite.ExecRequest) (sprite.Process, error) {
	dir := req.Dir
	if dir == "" {
		dir = sprite.HomeDir
	}
	env := req.Env
	if env == nil {
		env = []string{}
	}
	e, err := s.b.c.Exec(ctx, s.name, sprites.ExecOptions{
		Argv: req.Argv, Dir: s.Path(dir), Env: env, Stdin: req.Stdin != nil,
		Detachable: true, MaxRunAfterDisconnect: s.b.cfg.MaxRunAfterDisconnect,
	})
	if err != nil {
		return nil, err
	}
	p := newProcess(s, e, req.Stdout, req.Stderr, 0, 0)
	if req.Stdin != nil {
		go func() {
			w := e.Stdin()
			io.Copy(w, req.Stdin)
			w.Close()
		}()
	}
	return p, nil
}

// Kill ends command id (its whole process group, KILL at once).
func (s *remoteSprite) Kill(ctx context.Context, id string) error {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return fmt.Errorf("exec session id %q: %w", id, err)
	}
	return s.b.c.Kill(ctx, s.name, n, "SIGKILL", 5*time.Second)
}

// Reattach takes up command id again after aod restarted.
func (s *remoteSprite) Reattach(ctx context.Context, id string, stdoutSeen, stderrSeen int64, stdout, stderr io.Writer) (sprite.Process, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("exec session id %q: %w", id, err)
	}
	e, err := s.b.c.Attach(ctx, s.name, n)
	if err != nil {
		return nil, err
	}
	return newProcess(s, e, stdout, stderr, stdoutSeen, stderrSeen), nil
}

// process is a command running in a Sprite. Its output is delivered once:
// when the connection drops it attaches again, and the service replays
// the command's output from the start, so what was delivered is skipped.
type process struct {
	s              *remoteSprite
	e              *sprites.Exec
	id             int64
	stdout, stderr *skipWriter
	done           chan struct{}
	st             sprite.ExitStatus
	err            error

	mu       sync.Mutex
	detached bool
}

func newProcess(s *remoteSprite, e *sprites.Exec, stdout, stderr io.Writer, outSeen, errSeen int64) *process {
	p := &process{s: s, e: e, id: e.SessionID(), done: make(chan struct{}),
		stdout: &skipWriter{w: stdout, seen: outSeen}, stderr: &skipWriter{w: stderr, seen: errSeen}}
	go p.pump()
	return p
}

// maxReattach bounds the attempts to take a command up again after its
// connection dropped, in a row without output in between.
const maxReattach = 8

func (p *process) pump() {
	defer close(p.done)
	failures := 0
	for {
		code, err := p.e.Wait(p.stdout, p.stderr)
		if err == nil {
			p.st.Code = code
			return
		}
		if p.isDetached() {
			p.err = sprite.ErrDetached
			return
		}
		if !errors.Is(err, sprites.ErrDisconnected) || failures >= maxReattach {
			p.err = err
			return
		}
		before := p.stdout.seen + p.stderr.seen
		var e *sprites.Exec
		for failures < maxReattach {
			failures++
			time.Sleep(time.Duration(failures*failures) * 100 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			e, err = p.s.b.c.Attach(ctx, p.s.name, p.id)
			cancel()
			if err == nil {
				break
			}
			p.s.b.log.Warn("re-attaching to a command in a Sprite", "sprite", p.s.name, "exec", p.id, "err", err)
		}
		if e == nil {
			p.err = fmt.Errorf("lost the command's connection and could not attach again: %w", err)
			return
		}
		p.mu.Lock()
		p.e = e
		detached := p.detached
		p.mu.Unlock()
		if detached {
			e.Close()
			p.err = sprite.ErrDetached
			return
		}
		p.stdout.rewind()
		p.stderr.rewind()
		if p.stdout.seen+p.stderr.seen > before {
			failures = 0
		}
	}
}

func (p *process) ID() string { return fmt.Sprint(p.id) }

func (p *process) isDetached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.detached
}

// Detach closes aod's connection to the command, which the service keeps
// running for MaxRunAfterDisconnect, and waits for the output delivered.
func (p *process) Detach() (stdoutSeen, stderrSeen int64) {
	p.mu.Lock()
	p.detached = true
	e := p.e
	p.mu.Unlock()
	e.Close()
	<-p.done
	return p.stdout.seen, p.stderr.seen
}

// signalNames are the service's names of the signals the runner sends.
var signalNames = map[syscall.Signal]string{
	syscall.SIGINT: "INT", syscall.SIGTERM: "TERM", syscall.SIGKILL: "KILL",
	syscall.SIGHUP: "HUP", syscall.SIGQUIT: "QUIT",
}

func (p *process) Signal(sig syscall.Signal) error {
	name, ok := signalNames[sig]
	if !ok {
		return fmt.Errorf("signal %v not supported by Sprites", sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	select {
	case <-p.done:
		return nil
	default:
	}
	p.mu.Lock()
	e := p.e
	p.mu.Unlock()
	return e.Signal(ctx, name)
}

func (p *process) Wait() (sprite.ExitStatus, error) {
	<-p.done
	p.mu.Lock()
	e := p.e
	p.mu.Unlock()
	e.Close()
	return p.st, p.err
}

// skipWriter passes on one output stream of a command, skipping what was
// already delivered when the service replays it after a re-attach, in
// writes of at most 32 KiB.
type skipWriter struct {
	w    io.Writer
	seen int64 // bytes delivered
	pos  int64 // bytes of this attachment's stream
}

// rewind starts a new attachment, whose stream starts from the beginning.
func (s *skipWriter) rewind() { s.pos = 0 }

func (s *skipWriter) Write(b []byte) (int, error) {
	n := len(b)
	if skip := s.seen - s.pos; skip > 0 {
		cut := min(skip, int64(len(b)))
		b = b[cut:]
		s.pos += cut
	}
	for len(b) > 0 {
		chunk := b[:min(len(b), 32<<10)]
		if s.w != nil {
			if _, err := s.w.Write(chunk); err != nil {
				return n, err
			}
		}
		s.pos += int64(len(chunk))
		s.seen += int64(len(chunk))
		b = b[len(chunk):]
	}
	return n, nil
}
