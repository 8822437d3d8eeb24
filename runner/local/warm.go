package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/sprite"
)

// Most of a bubblewrap command's start is the same for every new sprite:
// bwrap's namespaces and mounts, the init's start, its cgroup join (a
// migration that waits for an RCU grace period on cgroup v1), the relay.
// The warm pool does that ahead of time: it keeps a few sprites whose init
// is parked, everything set up but the command, in a tree of their own
// (<sprites>/.warm-N, owned by its uid range). A new sprite takes one by
// renaming that tree to its own name (the sandbox's binds follow the
// directories, not their names); its first command is then only the
// parked init's fork and exec. Its proxy socket accepts nothing until
// then, when the session's policy is known.
//
// A warm sprite is built for a shape, the mount points and read-only binds
// of its sandbox, which must be those of the sprite taking it: the pool
// builds the shape the last new sprite asked for, so sessions of one kind
// of agent start warm from the second on.

// warmPrefix names the trees of warm sprites nobody has taken yet.
const warmPrefix = ".warm-"

// shape is what of a sprite its sandbox's command line fixes.
type shape struct {
	mounts []string
	binds  []sprite.Bind
	layer  string
}

func shapeOf(s *localSprite) shape { return shape{mounts: s.mounts, binds: s.binds, layer: s.layer} }

func (a shape) equal(b shape) bool {
	return slices.Equal(a.mounts, b.mounts) && slices.Equal(a.binds, b.binds) && a.layer == b.layer
}

// warmSprite is one parked init and its tree.
type warmSprite struct {
	s     *localSprite // named warmPrefix+N until taken
	shape shape
	p     *localProcess // bwrap, started, its init parked; output not read yet
	ctl   *os.File      // the init's request pipe
}

// warmPool keeps size warm sprites ready.
type warmPool struct {
	b    *Backend
	size int
	log  *slog.Logger

	mu       sync.Mutex
	idle     []*warmSprite
	held     map[string]*warmSprite // taken by a sprite whose first command has not started
	building int
	want     shape
	seq      int
	failures int // builds in a row that failed; the pool stops at maxWarmFailures
	closed   bool
	builds   sync.WaitGroup
}

const (
	maxWarmFailures = 3
	warmTimeout     = 30 * time.Second // for an init to park
)

func newWarmPool(b *Backend, size int, log *slog.Logger) *warmPool {
	return &warmPool{b: b, size: size, log: log, held: map[string]*warmSprite{}}
}

// sweepWarm removes the warm trees, and the trees of layer builds, a
// previous process left.
func sweepWarm(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() && (strings.HasPrefix(e.Name(), warmPrefix) || strings.HasPrefix(e.Name(), buildPrefix)) {
			removeTree(filepath.Join(root, e.Name()))
		}
	}
}

// fill starts builds until size sprites are ready or coming. Called with
// mu held.
func (pl *warmPool) fill() {
	for !pl.closed && pl.failures < maxWarmFailures && len(pl.idle)+pl.building < pl.size {
		pl.building++
		pl.seq++
		name := warmPrefix + strconv.Itoa(pl.seq)
		want := pl.want
		pl.builds.Add(1)
		go func() {
			defer pl.builds.Done()
			w, err := pl.build(name, want)
			pl.mu.Lock()
			pl.building--
			switch {
			case err != nil:
				pl.failures++
				pl.log.Warn("starting a warm sprite failed: new sessions start cold", "err", err)
				if pl.failures == maxWarmFailures {
					pl.log.Warn("warm sprites stopped after repeated failures")
				}
			case pl.closed || !w.shape.equal(pl.want):
				defer pl.discard(w)
			default:
				pl.failures = 0
				pl.idle = append(pl.idle, w)
			}
			if err == nil {
				pl.fill() // a shape changed while this one was built
			}
			pl.mu.Unlock()
		}()
	}
}

// build starts one warm sprite and waits until its init is parked.
func (pl *warmPool) build(name string, sh shape) (*warmSprite, error) {
	b := pl.b
	s := &localSprite{b: b, name: name, dir: filepath.Join(b.root, name), mounts: sh.mounts, binds: sh.binds, layer: sh.layer}
	if err := s.makeDirs(); err != nil {
		b.ids.release(name)
		return nil, err
	}
	fail := func(err error) (*warmSprite, error) {
		removeTree(s.dir)
		b.ids.release(name)
		return nil, err
	}
	proxy, err := b.net.listen()
	if err != nil {
		return fail(err)
	}
	ia := initArgs{uidBase: s.uid, socket: egressSocket, limits: b.limits}
	group, err := b.group(&ia, "warm")
	if err != nil {
		proxy.close()
		return fail(err)
	}
	var extra []*os.File
	if group != nil {
		extra = group.procs
	}
	release := func() {
		proxy.close()
		if group != nil {
			group.remove()
		}
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		release()
		return fail(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		release()
		return fail(err)
	}
	ia.parkFd, ia.readyFd = 3+len(extra), 4+len(extra)
	extra = append(extra, ctlR, readyW)
	// The memory limit without a cgroup: on the command, which comes later.
	ia.limits.MemoryBytes = 0
	args, unhold, err := s.sandboxArgs("/", proxy.path)
	if err != nil {
		release()
		return fail(err)
	}
	// Once the init is parked, bwrap has bound what it needs.
	defer unhold()
	argv := append(append(append([]string{b.bwrap}, args...), initPath), ia.args()...)
	p, err := s.launch(argv, []string{"PATH=" + sprite.DefaultPath}, s.dir, extra, true, proxy, group)
	if err != nil {
		ctlW.Close()
		readyR.Close()
		return fail(err)
	}
	w := &warmSprite{s: s, shape: sh, p: p, ctl: ctlW}
	one := make([]byte, 1)
	readyR.SetReadDeadline(time.Now().Add(warmTimeout))
	n, rerr := readyR.Read(one)
	readyR.Close()
	if n != 1 {
		// The init wrote why on its stderr before it exited.
		p.Signal(syscall.SIGKILL)
		var msg []byte
		if !errors.Is(rerr, os.ErrDeadlineExceeded) {
			msg, _ = io.ReadAll(io.LimitReader(p.errR, 4<<10))
		} else {
			msg = []byte("not ready after " + warmTimeout.String())
		}
		pl.discard(w)
		return fail(fmt.Errorf("the parked init exited: %s", bytes.TrimSpace(msg)))
	}
	return w, nil
}

// claim gives new sprite s a warm tree of its shape, renamed to s.dir,
// and reports whether it did. Either way the pool then builds s's shape.
func (pl *warmPool) claim(s *localSprite) bool {
	if pl == nil {
		return false
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	sh := shapeOf(s)
	if !pl.want.equal(sh) {
		pl.want = shape{mounts: slices.Clone(sh.mounts), binds: slices.Clone(sh.binds), layer: sh.layer}
		for _, w := range pl.idle {
			go pl.discard(w)
		}
		pl.idle = nil
		pl.fill()
		return false
	}
	defer pl.fill()
	for len(pl.idle) > 0 {
		w := pl.idle[0]
		pl.idle = pl.idle[1:]
		if err := os.Rename(w.s.dir, s.dir); err != nil {
			pl.log.Warn("taking a warm sprite", "err", err)
			go pl.discard(w)
			continue
		}
		// Its uid range passes to s with its home (ids.owner, as s's tree
		// is made).
		w.s = s
		pl.held[s.name] = w
		return true
	}
	return false
}

// take hands sprite s the warm init it claimed, once, for its first
// command; nil when it has none.
func (pl *warmPool) take(s *localSprite) *warmSprite {
	if pl == nil {
		return nil
	}
	pl.mu.Lock()
	w := pl.held[s.name]
	delete(pl.held, s.name)
	pl.mu.Unlock()
	if w == nil || !w.shape.equal(shapeOf(s)) {
		if w != nil {
			pl.discard(w)
		}
		return nil
	}
	return w
}

// drop discards the warm init sprite name claimed and never used (the
// sprite is being deleted).
func (pl *warmPool) drop(name string) {
	if pl == nil {
		return
	}
	pl.mu.Lock()
	w := pl.held[name]
	delete(pl.held, name)
	pl.mu.Unlock()
	if w != nil {
		pl.discard(w)
	}
}

// discard kills a warm sprite's init; its tree goes too while it is still
// the pool's (a taken one is its sprite's, removed with it).
func (pl *warmPool) discard(w *warmSprite) {
	w.ctl.Close() // a parked init exits on an empty request (closing twice is harmless)
	w.p.Signal(syscall.SIGKILL)
	select {
	case <-w.p.watchDone:
	default:
		close(w.p.watchDone)
	}
	w.p.Wait()
	if strings.HasPrefix(w.s.name, warmPrefix) {
		removeTree(w.s.dir)
		pl.b.ids.release(w.s.name)
	}
}

// start builds the first warm sprites (of the shape of a sprite with no
// mounts and no binds).
func (pl *warmPool) start() {
	pl.mu.Lock()
	pl.fill()
	pl.mu.Unlock()
}

// close discards every warm sprite and waits for the builds under way.
func (pl *warmPool) close() {
	if pl == nil {
		return
	}
	pl.mu.Lock()
	pl.closed = true
	ws := append([]*warmSprite{}, pl.idle...)
	for _, w := range pl.held {
		ws = append(ws, w)
	}
	pl.idle, pl.held = nil, map[string]*warmSprite{}
	pl.mu.Unlock()
	for _, w := range ws {
		pl.discard(w)
	}
	pl.builds.Wait()
}

// startWarm runs req as the first command of the sprite that claimed w.
func (s *localSprite) startWarm(w *warmSprite, req sprite.ExecRequest, dir string) (*localProcess, error) {
	s.b.net.start(w.p.proxy, s.name, s.network)
	ia := initArgs{limits: s.b.limits}
	if w.p.group != nil {
		ia.limits.MemoryBytes = 0
	}
	data, err := json.Marshal(parkRequest{
		Argv:     s.b.commandArgv(&ia, req.Argv),
		Env:      append(slices.Clip(req.Env), egress.ProxyEnv(egress.RelayAddr)...),
		Dir:      dir,
		Forwards: forwards(s.network),
	})
	if err != nil {
		return nil, err
	}
	if len(data) > maxParkRequest {
		return nil, fmt.Errorf("command and environment too large (%d bytes)", len(data))
	}
	_, err = w.ctl.Write(data)
	if cerr := w.ctl.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("give the warm sprite its command: %w", err)
	}
	w.p.run(s.dir, req)
	return w.p, nil
}
