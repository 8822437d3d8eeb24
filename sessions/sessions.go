// Package sessions holds the session use cases the API and the web UI
// share: create, prompt, terminate and delete, each a store transaction
// followed by a word to the runner, under one policy (the per-user quota
// default and the providers that need no key). Neither front end calls
// the store's session writes or the runner itself.
package sessions

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
	"golang.org/x/sys/unix"
)

// Runner is what the use cases tell the session runner: about new work,
// and about sessions that must stop or disappear.
type Runner interface {
	Enqueue(sessionID string)
	Interrupt(sessionID string)
	Terminate(sessionID string)
	Delete(sessionID string)
}

// spriteChecker is a runner that can tell a sprite vanished behind its
// back (a remote service's), before a prompt is taken.
type spriteChecker interface {
	CheckSprite(ctx context.Context, userID, id string)
}

// DefaultMaxConcurrent is the per-user limit of pending and running
// sessions a server starts with.
const DefaultMaxConcurrent = 100

// The original's 503s when no session backend is configured; the prompt
// route has its own wording.
const (
	noBackend       = "Session backend is not configured"
	noBackendPrompt = "Session backend token is not configured"
)

// DefaultMinFreeDisk is the free space the data dir's disk must keep for a
// new session to start: the database must never fill its disk.
const DefaultMinFreeDisk = 2 << 30

// Service runs the use cases. A nil runner makes every write answer 503.
type Service struct {
	db          *store.DB
	run         Runner
	policy      store.SessionPolicy
	minFreeDisk int64
}

// Option adjusts a Service.
type Option func(*Service)

// MinFreeDisk refuses new sessions (503) while the data dir's disk has
// less than n bytes free; 0 turns the check off.
func MinFreeDisk(n int64) Option { return func(s *Service) { s.minFreeDisk = n } }

// New returns the service over the store and the runner with the server's
// policy for new sessions.
func New(db *store.DB, run Runner, policy store.SessionPolicy, opts ...Option) *Service {
	s := &Service{db: db, run: run, policy: policy}
	for _, o := range opts {
		o(s)
	}
	return s
}

// freeDisk is the space an unprivileged writer may still use on dir's
// filesystem.
func freeDisk(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// checkDisk is the 503 for a new session while the data dir's disk is
// nearly full: sessions write their output and files there.
func (s *Service) checkDisk() error {
	if s.minFreeDisk <= 0 {
		return nil
	}
	free, err := freeDisk(s.db.Dir())
	if err != nil {
		return fmt.Errorf("free disk space of the data dir: %w", err)
	}
	if free < s.minFreeDisk {
		return store.Errorf(store.Unavailable, "The server is low on disk space (%d MiB free, %d MiB required for new sessions); try again later",
			free>>20, s.minFreeDisk>>20)
	}
	return nil
}

// Ready is the 503 a create, terminate or delete gets when there is no
// session backend, checked before anything else (the contract's order).
func (s *Service) Ready() error { return s.backend(noBackend) }

func (s *Service) backend(msg string) error {
	if s.run == nil {
		return store.Errorf(store.Unavailable, "%s", msg)
	}
	return nil
}

// Create stores a new session with turn 1 pending and queues it.
func (s *Service) Create(ctx context.Context, userID string, in store.SessionInput) (*store.Session, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	if err := s.checkDisk(); err != nil {
		return nil, err
	}
	in.Policy = s.policy
	sess, err := s.db.CreateSession(ctx, userID, in)
	if err != nil {
		return nil, err
	}
	s.run.Enqueue(sess.ID)
	return sess, nil
}

// CheckPromptable is the 503 or 409 a prompt would get from the server and
// the session's state, before its body is read (the contract's order).
func (s *Service) CheckPromptable(ctx context.Context, userID, id string) error {
	if err := s.backend(noBackendPrompt); err != nil {
		return err
	}
	return s.db.CheckPromptable(ctx, userID, id)
}

// Prompt queues the next turn of a completed session.
func (s *Service) Prompt(ctx context.Context, userID, id, prompt string, timeout int) (*store.Session, error) {
	if err := s.backend(noBackendPrompt); err != nil {
		return nil, err
	}
	if c, ok := s.run.(spriteChecker); ok {
		c.CheckSprite(ctx, userID, id)
	}
	sess, err := s.db.PromptSession(ctx, userID, id, prompt, timeout)
	if err != nil {
		return nil, err
	}
	s.run.Enqueue(sess.ID)
	return sess, nil
}

// Terminate marks the session terminated and has the runner kill its
// processes and remove its sprite.
func (s *Service) Terminate(ctx context.Context, userID, id string) (*store.Session, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	sess, err := s.db.TerminateSession(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	s.run.Terminate(sess.ID)
	return sess, nil
}

// Interrupt records an interrupt of the session's pending or running turn
// and has the runner stop it; it returns the session as it was when asked.
func (s *Service) Interrupt(ctx context.Context, userID, id string) (*store.Session, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	sess, err := s.db.InterruptSession(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	s.run.Interrupt(sess.ID)
	return sess, nil
}

// Delete removes a finished session and has the runner remove its sprite.
func (s *Service) Delete(ctx context.Context, userID, id string) error {
	if err := s.Ready(); err != nil {
		return err
	}
	if err := s.db.DeleteSession(ctx, userID, id); err != nil {
		return err
	}
	s.run.Delete(id)
	return nil
}

// SpriteReader is a Runner that can hand out a session's sprite to read
// its files, and compute the diff of its repositories.
type SpriteReader interface {
	SessionSprite(ctx context.Context, sess *store.Session) (sprite.Sprite, error)
	SessionDiff(ctx context.Context, sess *store.Session, w io.Writer) error
}

// Diff writes the unified diff of the user's session id's repositories
// against the commits they were cloned at (404, 410, 503 as Sprite).
// Nothing is written before the sprite is found.
func (s *Service) Diff(ctx context.Context, userID, id string, w io.Writer) error {
	sess, err := s.db.GetSession(ctx, userID, id)
	if err != nil {
		return err
	}
	sr, ok := s.run.(SpriteReader)
	if !ok {
		return store.Errorf(store.Unavailable, noBackend)
	}
	return sr.SessionDiff(ctx, sess, w)
}

// Sprite is the user's session id's sprite, for the files API: 404 for
// another user's session, 410 when the sprite is gone, 503 without a
// runner that has sprites.
func (s *Service) Sprite(ctx context.Context, userID, id string) (sprite.Sprite, error) {
	sess, err := s.db.GetSession(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	sr, ok := s.run.(SpriteReader)
	if !ok {
		return nil, store.Errorf(store.Unavailable, noBackend)
	}
	return sr.SessionSprite(ctx, sess)
}

// Layer is one package layer of an environment: its packages installed for
// one version of it, kept by a runner whose sprites have a writable root.
type Layer struct {
	Version  int
	Building bool      // a session is building it now
	Since    time.Time // when the build started (building), or the layer was last used
	InUse    bool      // some session's sprite is made over it
	Bytes    int64     // the disk space it takes (0 while building)
}

// LayerLister is a Runner that can keep environments' package layers
// (Layers says whether it does).
type LayerLister interface {
	Layers() bool
	EnvironmentLayers(environmentID string) ([]Layer, error)
}

// EnvironmentLayers are the package layers of the user's environment id,
// newest version first; ok is false when this server keeps none (its
// sprites have no writable root). Another user's environment is a 404.
func (s *Service) EnvironmentLayers(ctx context.Context, userID, id string) (layers []Layer, ok bool, err error) {
	if _, err := s.db.GetEnvironment(ctx, userID, id); err != nil {
		return nil, false, err
	}
	ll, ok := s.run.(LayerLister)
	if !ok || !ll.Layers() {
		return nil, false, nil
	}
	layers, err = ll.EnvironmentLayers(id)
	return layers, true, err
}
