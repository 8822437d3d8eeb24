package runner

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aod/aod/internal/metrics"
	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/store"
)

// Where sprites have a writable root, an environment version's packages
// are installed once, in a build sprite of their own, into a package layer
// (runner/local's layers) that every session of that version then has
// below its own root: the first session builds it (the provision_setup
// stage says what is installing and for how long), sessions starting
// meanwhile wait for that build and say so, later ones start with the
// packages in place. A build that fails fails its waiting sessions with
// its error and is not remembered: the next session builds again. The
// setup script still runs in every session, after its layer is in place.

// layerFormat changes when what a layer holds changes, so older layers are
// never used again (and are collected).
const layerFormat = "l1"

// layerKey names the layer of an environment version's packages.
func layerKey(environment *store.Environment) string {
	steps, _ := packageSteps(environment)
	if environment == nil || len(steps) == 0 {
		return ""
	}
	h := sha256.New()
	for _, st := range steps {
		b, _ := json.Marshal([]any{st.manager, st.pkgs})
		h.Write(b)
	}
	return fmt.Sprintf("%s-v%d-%s-%s", environment.ID, environment.Version, layerFormat, hex.EncodeToString(h.Sum(nil))[:16])
}

// layerBuild is one build of a layer, shared by the sessions waiting for it.
type layerBuild struct {
	done    chan struct{}
	err     error
	started time.Time
	log     *cmdout.Bounded // what the build's commands wrote

	mu       sync.Mutex
	watchers map[string]func(msg string) // by session: told of each step
}

func (b *layerBuild) watch(id string, fn func(string)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.watchers[id] = fn
}

func (b *layerBuild) unwatch(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.watchers, id)
}

func (b *layerBuild) tell(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, fn := range b.watchers {
		fn(msg)
	}
}

// layers holds the builds in progress, by key.
type layers struct {
	mu     sync.Mutex
	builds map[string]*layerBuild
}

// packagesLine says what an environment installs: "apt: cowsay; npm: semver".
func packagesLine(steps []packageStep) string {
	parts := make([]string, len(steps))
	for i, st := range steps {
		parts[i] = st.manager + ": " + strings.Join(st.pkgs, " ")
	}
	return strings.Join(parts, "; ")
}

// layerFor makes sure the session's package layer exists, building it or
// waiting for the build under way, and says how it went. Its progress
// goes to the session's provision_setup stage as it happens; the build's
// output, to the session's provisioning log.
func (p *provisioning) layerFor(key string, steps []packageStep) (string, error) {
	r := p.r
	r.layers.mu.Lock()
	if r.layers.builds == nil {
		r.layers.builds = map[string]*layerBuild{}
	}
	b, building := r.layers.builds[key]
	if !building {
		if r.local.HasLayer(key) { // finished since the sprite was made
			r.layers.mu.Unlock()
			return "packages from the environment's layer (" + packagesLine(steps) + ")", nil
		}
		b = &layerBuild{done: make(chan struct{}), started: time.Now(), watchers: map[string]func(string){},
			log: &cmdout.Bounded{Head: provisionLogHead, Tail: provisionLogTail}}
		r.layers.builds[key] = b
	}
	tell := func(msg string) { p.log.started(stageEvent(stageProvisionSetup, store.StageStarted, nil, msg)) }
	b.watch(p.sess.ID, tell)
	r.layers.mu.Unlock()
	defer b.unwatch(p.sess.ID)
	if building {
		tell(fmt.Sprintf("waiting for the environment's package layer (%s), which another session started building %s ago",
			packagesLine(steps), time.Since(b.started).Round(100*time.Millisecond)))
	} else {
		r.bg.Add(1)
		go func() {
			defer r.bg.Done()
			b.err = r.buildLayer(p, key, steps, b)
			metrics.LayerBuilds.WithLabelValues(outcome(b.err == nil)).Inc()
			r.layers.mu.Lock()
			delete(r.layers.builds, key)
			r.layers.mu.Unlock()
			close(b.done)
		}()
	}
	select {
	case <-b.done:
	case <-p.ctx.Done():
		return "", p.ctx.Err()
	}
	head, tail, omitted := b.log.Text()
	p.logBuf.Write([]byte(head))
	if omitted > 0 {
		fmt.Fprintf(p.logBuf, "\n[aod: %d bytes of output left out here]\n%s", omitted, tail)
	}
	if b.err != nil {
		return "", fmt.Errorf("building the environment's package layer: %w", b.err)
	}
	return fmt.Sprintf("packages installed into the environment's layer in %s (%s); later sessions of this version start with them",
		time.Since(b.started).Round(100*time.Millisecond), packagesLine(steps)), nil
}

// buildLayer installs an environment's packages in a build sprite of
// their own and saves what they wrote as layer key. It runs on its own
// deadline, not the starting session's: a terminated session leaves the
// build to the sessions waiting for it.
func (r *Runner) buildLayer(p *provisioning, key string, steps []packageStep, b *layerBuild) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ProvisionTimeout)
	defer cancel()
	name := local.BuildSpriteName(key)
	defer r.backend.Delete(context.Background(), name) // a failed build's; a saved one is gone already
	sp, err := r.backend.Create(ctx, name, sprite.Options{Network: p.opts.Network})
	if err != nil {
		return err
	}
	env := layerEnv(p.env, sp)
	for _, st := range steps {
		b.tell(fmt.Sprintf("installing %s packages: %s (%s so far)", st.manager, strings.Join(st.pkgs, " "), time.Since(b.started).Round(100*time.Millisecond)))
		fmt.Fprintf(b.log, "$ # %s: %s\n", st.manager, strings.Join(st.pkgs, " "))
		stderr := &cmdout.Tail{Max: 8 << 10}
		proc, err := sp.Start(ctx, sprite.ExecRequest{
			Argv:   []string{"bash", "--noprofile", "--norc", "-e", "-c", st.script},
			Dir:    sprite.HomeDir,
			Env:    envList(env),
			Stdout: b.log,
			Stderr: io.MultiWriter(stderr, b.log),
		})
		if err != nil {
			return err
		}
		status, _, err := r.supervise(ctx, proc, 0, nil, nil)
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("timed out after %s", r.cfg.ProvisionTimeout)
		case status.Limit != "":
			return fmt.Errorf("%s: %s\nstderr:\n%s", st.manager, status.Limit, p.redact.Redact(stderr.Last(2000), true, false))
		case status.Code != 0:
			return fmt.Errorf("%s: exit %d\nstderr:\n%s", st.manager, status.Code, p.redact.Redact(stderr.Last(2000), true, false))
		}
	}
	b.tell(fmt.Sprintf("saving the package layer (%s so far)", time.Since(b.started).Round(100*time.Millisecond)))
	if err := r.local.SaveLayer(ctx, name, key); err != nil {
		return fmt.Errorf("saving the layer: %w", err)
	}
	if !r.local.HasLayer(key) {
		return errors.New("the saved layer is missing")
	}
	return nil
}

// layerEnv is a build's environment: the session's, with the package
// managers installing into system directories (the layer holds /usr,
// /etc, /opt and /var, not the build sprite's home) unless the
// environment's own variables say otherwise.
func layerEnv(sessionEnv map[string]string, sp sprite.Sprite) map[string]string {
	env := make(map[string]string, len(sessionEnv)+8)
	for k, v := range sessionEnv {
		env[k] = v
	}
	for k, v := range userToolEnv(sp.Path(sprite.HomeDir)) {
		if env[k] == v {
			delete(env, k) // aod's home default, not the user's choice
		}
	}
	for k, v := range map[string]string{
		"PATH":                      sprite.DefaultPath,
		"NPM_CONFIG_PREFIX":         "/usr/local",
		"PIP_BREAK_SYSTEM_PACKAGES": "1",
		"CARGO_INSTALL_ROOT":        "/usr/local",
		"GOBIN":                     "/usr/local/bin",
		"GOPATH":                    sp.Path(sprite.HomeDir) + "/go",
		"DEBIAN_FRONTEND":           "noninteractive",
	} {
		if _, set := env[k]; !set {
			env[k] = v
		}
	}
	return env
}

// EnvironmentLayers are the package layers of environment id, those being
// built included, newest version first (sessions.LayerLister).
func (r *Runner) EnvironmentLayers(id string) ([]sessions.Layer, error) {
	prefix := id + "-v"
	version := func(key string) int {
		v, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(key, prefix), "-", 2)[0])
		return v
	}
	var out []sessions.Layer
	r.layers.mu.Lock()
	for key, b := range r.layers.builds {
		if strings.HasPrefix(key, prefix) {
			out = append(out, sessions.Layer{Version: version(key), Building: true, Since: b.started})
		}
	}
	r.layers.mu.Unlock()
	built, err := local.ListLayers(r.cfg.DataDir, prefix)
	for _, l := range built {
		out = append(out, sessions.Layer{Version: version(l.Key), Since: l.LastUsed, InUse: l.InUse, Bytes: l.Bytes})
	}
	slices.SortStableFunc(out, func(a, b sessions.Layer) int { return cmp.Compare(b.Version, a.Version) })
	return out, err
}
