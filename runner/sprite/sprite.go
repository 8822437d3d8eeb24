// Package sprite is the contract between the session runner and the
// machines sessions run in: how a sprite is created, found, deleted, how
// its files are written and its commands run, and the paths every sprite
// offers. It holds no implementation; runner/local is one backend, a
// remote one (Fly.io Sprites) can be another.
package sprite

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"syscall"
	"time"
)

// The paths every sprite offers to its processes (spec/runner.md §8.1).
// A backend may place them elsewhere (see Sprite.Path); the runner writes
// only these names.
const (
	HomeDir      = "/home/sprite"
	WorkspaceDir = "/workspace"
	TmpDir       = "/tmp"
)

// DefaultPath is the PATH a sprite's processes start from.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNotFound is what Backend.Get answers for a sprite that does not
// exist (never created, deleted, or swept).
var ErrNotFound = errors.New("sprite not found")

// Backend creates, finds and deletes sprites.
type Backend interface {
	// Create makes the sprite (idempotent: an existing one is reused).
	Create(ctx context.Context, name string, opts Options) (Sprite, error)
	// Get returns an existing sprite or ErrNotFound.
	Get(ctx context.Context, name string, opts Options) (Sprite, error)
	// Delete removes a sprite and everything in it; a missing one is not an error.
	Delete(ctx context.Context, name string) error
	// List names every sprite the backend holds (orphan sweeps after a crash).
	List(ctx context.Context) ([]string, error)
}

// Options describe what a session needs from its sprite on every exec.
// They are derived from the session each time, never stored.
type Options struct {
	// Mounts are absolute paths of repository checkouts, by resource
	// position ("" where a resource needs nothing).
	Mounts []string
	// ReadOnlyBinds are host directories shared by sprites (the installed
	// agent CLIs), visible read-only at their At path.
	ReadOnlyBinds []Bind
	// Network is what the sprite's processes may reach.
	Network Network
	// Layer names the environment's package layer the sprite's root is
	// made over (see the local backend's layers), "" for none.
	Layer string
}

// Network is a sprite's egress policy. Whatever it says, a backend keeps
// the host's loopback, link-local and private addresses out of reach
// unless its operator allowed them.
type Network struct {
	// Limited: only Hosts (and what the operator allows) may be reached.
	Limited bool
	// Hosts are the allowed host names when Limited: exact, or "*.domain"
	// for any subdomain.
	Hosts []string
	// Models are the host:port endpoints of model APIs the sprite's CLI is
	// pointed at (a gateway, or aod's fake model API): always reachable,
	// and one on the host's loopback appears at the same address inside.
	Models []string
}

// Bind shows host directory Host inside a sprite at the absolute path At.
type Bind struct {
	Host string
	At   string
}

// Sprite is one session's machine: its files persist across turns.
type Sprite interface {
	Name() string
	// Path maps a sprite path (HomeDir/…, WorkspaceDir/…, TmpDir/… or a
	// mount path) to the path its processes see it at.
	Path(p string) string
	// WriteFile writes a file inside the sprite, creating parent directories.
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error
	// ReadFile reads a file inside the sprite; a missing file is an error
	// satisfying errors.Is(err, fs.ErrNotExist).
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Start runs a command in the sprite. Non-zero exits are values of
	// Process.Wait, not errors; errors are backend failures.
	Start(ctx context.Context, req ExecRequest) (Process, error)

	// What the files API reads. No link is ever followed: a symlink is
	// described (with its target), never opened or listed through. A
	// missing path is an error satisfying errors.Is(err, fs.ErrNotExist).
	//
	// Stat describes path.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// ReadDir lists directory path, by name.
	ReadDir(ctx context.Context, path string) ([]FileInfo, error)
	// Open opens regular file path for reading.
	Open(ctx context.Context, path string) (io.ReadCloser, FileInfo, error)
}

// File types in FileInfo.Type.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
	TypeOther   = "other" // a FIFO, socket or device
)

// FileInfo describes one file of a sprite.
type FileInfo struct {
	Name    string
	Type    string
	Size    int64
	Mode    fs.FileMode // permission bits
	ModTime time.Time
	Target  string // a symlink's target, as written
}

// ExecRequest is one command to run in a sprite.
type ExecRequest struct {
	Argv []string
	Dir  string   // a sprite path; "" means HomeDir
	Env  []string // the complete environment, KEY=value
	// Stdin is fed to the command, then closed; nil means immediate EOF.
	Stdin io.Reader
	// Stdout and Stderr receive the output as it arrives, in reads of at
	// most 32 KiB. They may block (backpressure); nil discards.
	Stdout, Stderr io.Writer
}

// Process is a running command and everything it started.
type Process interface {
	// Signal sends sig to every process of the command (its process group).
	Signal(sig syscall.Signal) error
	// Wait returns once the command has exited, its leftover processes are
	// killed and its output has been delivered to the writers.
	Wait() (ExitStatus, error)
}

// ExitStatus is how a command ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal when a signal ended it.
	Code int
	// Limit says which of the sprite's limits ended the command (its disk
	// or memory), as a message for the user; "" when none did.
	Limit string
}

// progressKey carries a function that tells the user what a slow backend
// call is waiting for (see WithProgress).
type progressKey struct{}

// WithProgress returns ctx carrying tell: a backend that must wait (for
// capacity, say) calls Progress with a message for the stage under way.
func WithProgress(ctx context.Context, tell func(msg string)) context.Context {
	return context.WithValue(ctx, progressKey{}, tell)
}

// Progress passes msg to ctx's progress function, if it has one.
func Progress(ctx context.Context, msg string) {
	if tell, ok := ctx.Value(progressKey{}).(func(string)); ok && tell != nil {
		tell(msg)
	}
}

// Policed is a sprite whose network policy is set on the machine (a
// remote service's VM) rather than by aod's egress proxy: the runner sets
// it in its network_policy stage, after the agent CLI is installed.
type Policed interface {
	SetNetwork(ctx context.Context, n Network) error
}

// Reattacher is a sprite whose commands outlive the connection that
// started them (and aod's process): a command started there can be taken
// up again by the ID its Process reports (see Resumable).
type Reattacher interface {
	// Reattach resumes delivering the output of command id to req's
	// writers, skipping the first stdoutSeen and stderrSeen bytes of each
	// (what was stored before), and returns it as a Process.
	Reattach(ctx context.Context, id string, stdoutSeen, stderrSeen int64, stdout, stderr io.Writer) (Process, error)
}

// Killer is a sprite that can kill a command by its ID (see Resumable)
// without taking it up: a turn a crash cut short, whose output is lost.
type Killer interface {
	Kill(ctx context.Context, id string) error
}

// Resumable is a Process a Reattacher can take up again by its ID.
type Resumable interface {
	Process
	ID() string
	// Detach lets go of the command, which keeps running, and says how
	// many bytes of each stream were delivered to the writers; Wait then
	// returns ErrDetached.
	Detach() (stdoutSeen, stderrSeen int64)
}

// ErrDetached is what Wait answers for a process that was detached.
var ErrDetached = errors.New("detached from the command, which runs on")
