// Package spritetest provides a sprite for tests of code that writes a
// sprite's files and computes its paths (runtime adapters, environment
// assembly) without a real backend: a directory on the host that runs
// nothing.
package spritetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aod/aod/runner/sprite"
)

// Sprite keeps its files under Root (sprite path p at Root/p).
type Sprite struct {
	Root string
	// Sandboxed makes Path answer paths as a sandbox's processes see them
	// (unchanged); otherwise Path answers host paths, as an unsandboxed
	// backend's processes see them.
	Sandboxed bool
	Binds     []sprite.Bind
}

var _ sprite.Sprite = (*Sprite)(nil)

// New returns a sprite in a fresh temporary directory with opts' binds.
func New(t testing.TB, sandboxed bool, opts sprite.Options) *Sprite {
	t.Helper()
	return &Sprite{Root: t.TempDir(), Sandboxed: sandboxed, Binds: opts.ReadOnlyBinds}
}

func (s *Sprite) Name() string { return filepath.Base(s.Root) }

// HostPath is where the sprite keeps sprite path p.
func (s *Sprite) HostPath(p string) string { return filepath.Join(s.Root, path.Clean("/"+p)) }

func (s *Sprite) Path(p string) string {
	p = path.Clean(p)
	if s.Sandboxed {
		return p
	}
	// Unsandboxed, a shared directory is used where it lies on the host.
	for _, b := range s.Binds {
		if p == b.At || strings.HasPrefix(p, b.At+"/") {
			return filepath.Join(b.Host, strings.TrimPrefix(p, b.At))
		}
	}
	return s.HostPath(p)
}

func (s *Sprite) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode) error {
	hp := s.HostPath(p)
	if err := os.MkdirAll(filepath.Dir(hp), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(hp, data, mode); err != nil {
		return err
	}
	return os.Chmod(hp, mode) // whatever the umask
}

func (s *Sprite) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return os.ReadFile(s.HostPath(p))
}

// Start refuses: this sprite runs nothing.
func (s *Sprite) Start(ctx context.Context, req sprite.ExecRequest) (sprite.Process, error) {
	return nil, fmt.Errorf("spritetest: cannot run %q: %w", req.Argv, errors.ErrUnsupported)
}

func info(name string, fi fs.FileInfo, hp string) sprite.FileInfo {
	out := sprite.FileInfo{Name: name, Mode: fi.Mode().Perm(), ModTime: fi.ModTime(), Type: sprite.TypeOther}
	switch {
	case fi.Mode().IsRegular():
		out.Type, out.Size = sprite.TypeFile, fi.Size()
	case fi.IsDir():
		out.Type = sprite.TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		out.Type = sprite.TypeSymlink
		out.Target, _ = os.Readlink(hp)
	}
	return out
}

// Stat describes a file of the test sprite (it is the test's own tree:
// no confinement).
func (s *Sprite) Stat(ctx context.Context, p string) (sprite.FileInfo, error) {
	hp := s.HostPath(p)
	fi, err := os.Lstat(hp)
	if err != nil {
		return sprite.FileInfo{}, err
	}
	return info(path.Base(p), fi, hp), nil
}

func (s *Sprite) ReadDir(ctx context.Context, p string) ([]sprite.FileInfo, error) {
	entries, err := os.ReadDir(s.HostPath(p))
	if err != nil {
		return nil, err
	}
	var out []sprite.FileInfo
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			out = append(out, info(e.Name(), fi, filepath.Join(s.HostPath(p), e.Name())))
		}
	}
	return out, nil
}

func (s *Sprite) Open(ctx context.Context, p string) (io.ReadCloser, sprite.FileInfo, error) {
	fi, err := s.Stat(ctx, p)
	if err != nil {
		return nil, fi, err
	}
	if fi.Type != sprite.TypeFile {
		return nil, fi, fmt.Errorf("%s is not a regular file", p)
	}
	f, err := os.Open(s.HostPath(p))
	return f, fi, err
}
