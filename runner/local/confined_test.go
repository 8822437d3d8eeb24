package local

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
	"golang.org/x/sys/unix"
)

// hostileSprite is a sprite whose tree a hostile process has prepared, and a
// host directory outside it holding a file the server must never touch.
func hostileSprite(t *testing.T) (sp *localSprite, home, outside, secret string) {
	t.Helper()
	b, err := newBackend(t.TempDir(), Limits{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Create(context.Background(), "victim", sprite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	outside = t.TempDir()
	secret = filepath.Join(outside, "host-file")
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp = s.(*localSprite)
	return sp, filepath.Join(sp.dir, "home"), outside, secret
}

func plant(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// The attacks of a setup script on the server's host-side writes: a
// symlinked file where a skill goes, a symlinked directory where a CLI's
// config goes (~/.codex), a symlinked parent further up, a hard link, a
// FIFO where a config file is read. Each write or read is refused and the
// host file is unchanged.
func TestHostSideFileOpsNeverLeaveTheTree(t *testing.T) {
	ctx := context.Background()
	unchanged := func(is *is.I, secret string) {
		b, err := os.ReadFile(secret)
		is.NoErr(err)                        // the host file is still there
		is.Equal(string(b), "host secret\n") // unchanged
		fi, err := os.Stat(secret)
		is.NoErr(err)
		is.Equal(fi.Mode().Perm(), fs.FileMode(0o644)) // with its mode
	}
	t.Run("symlinked skill file", func(t *testing.T) {
		is := is.New(t)
		sp, home, _, secret := hostileSprite(t)
		plant(t, secret, filepath.Join(home, ".claude/skills/pwn/SKILL.md"))
		err := sp.WriteFile(ctx, "/home/sprite/.claude/skills/pwn/SKILL.md", []byte("pwned"), 0o600)
		is.True(errors.Is(err, errLink)) // refused
		unchanged(is, secret)
		_, err = sp.ReadFile(ctx, "/home/sprite/.claude/skills/pwn/SKILL.md")
		is.True(errors.Is(err, errLink)) // and never read through
	})
	t.Run("symlinked config directory", func(t *testing.T) {
		is := is.New(t)
		sp, home, outside, secret := hostileSprite(t)
		plant(t, outside, filepath.Join(home, ".codex"))
		err := sp.WriteFile(ctx, "/home/sprite/.codex/config.toml", []byte("pwned"), 0o600)
		is.True(errors.Is(err, errLink)) // refused
		_, err = os.Lstat(filepath.Join(outside, "config.toml"))
		is.True(errors.Is(err, fs.ErrNotExist)) // nothing was created in the host directory
		_, err = sp.ReadFile(ctx, "/home/sprite/.codex/host-file")
		is.True(errors.Is(err, errLink)) // nor read from it
		unchanged(is, secret)
	})
	t.Run("symlinked parent of a new directory", func(t *testing.T) {
		is := is.New(t)
		sp, home, outside, _ := hostileSprite(t)
		plant(t, outside, filepath.Join(home, ".config"))
		err := sp.WriteFile(ctx, "/home/sprite/.config/opencode/opencode.json", []byte("{}"), 0o644)
		is.True(errors.Is(err, errLink)) // refused
		_, err = os.Lstat(filepath.Join(outside, "opencode"))
		is.True(errors.Is(err, fs.ErrNotExist)) // no directory made outside
	})
	t.Run("hard link to a host file", func(t *testing.T) {
		is := is.New(t)
		sp, home, _, secret := hostileSprite(t)
		if err := os.Link(secret, filepath.Join(home, ".claude.json")); err != nil {
			t.Fatalf("hard-link the host file into the sprite: %v", err)
		}
		err := sp.WriteFile(ctx, "/home/sprite/.claude.json", []byte("{}"), 0o600)
		is.True(errors.Is(err, errLink)) // a file with another name is refused
		unchanged(is, secret)
	})
	t.Run("FIFO where a config file is read", func(t *testing.T) {
		is := is.New(t)
		sp, home, _, _ := hostileSprite(t)
		is.NoErr(syscall.Mkfifo(filepath.Join(home, ".claude.json"), 0o600)) // planted
		done := make(chan error, 1)
		go func() { _, err := sp.ReadFile(ctx, "/home/sprite/.claude.json"); done <- err }()
		select {
		case err := <-done:
			is.True(errors.Is(err, errLink)) // refused, not read
		case <-time.After(5 * time.Second):
			t.Fatal("reading a planted FIFO hung the server")
		}
	})
	t.Run("dot-dot", func(t *testing.T) {
		is := is.New(t)
		sp, _, _, _ := hostileSprite(t)
		err := sp.WriteFile(ctx, "/home/sprite/../../etc/x", []byte("x"), 0o600)
		is.True(err != nil) // a path that cleans to outside the sprite is refused
	})
	t.Run("ordinary files still work", func(t *testing.T) {
		is := is.New(t)
		sp, home, _, _ := hostileSprite(t)
		is.NoErr(sp.WriteFile(ctx, "/home/sprite/.codex/config.toml", []byte("a = 1\n"), 0o600)) // new dirs and file
		is.NoErr(sp.WriteFile(ctx, "/home/sprite/.codex/config.toml", []byte("b\n"), 0o640))     // rewritten shorter
		got, err := sp.ReadFile(ctx, "/home/sprite/.codex/config.toml")
		is.NoErr(err)
		is.Equal(string(got), "b\n") // truncated, then written
		fi, err := os.Stat(filepath.Join(home, ".codex/config.toml"))
		is.NoErr(err)
		is.Equal(fi.Mode().Perm(), fs.FileMode(0o640)) // with the mode asked for
		_, err = sp.ReadFile(ctx, "/home/sprite/missing.json")
		is.True(errors.Is(err, fs.ErrNotExist)) // a missing file is fs.ErrNotExist
	})
}

// Removing a sprite with read-only directories makes them writable through
// their own fds: a symlink inside leading to a host directory leaves that
// directory's mode and contents alone.
func TestDeleteNeverChangesWhatALinkPointsAt(t *testing.T) {
	is := is.New(t)
	sp, home, outside, secret := hostileSprite(t)
	ro := filepath.Join(home, "go/pkg/mod")
	is.NoErr(os.MkdirAll(ro, 0o700))
	is.NoErr(os.WriteFile(filepath.Join(ro, "f"), []byte("x"), 0o444))
	plant(t, outside, filepath.Join(ro, "escape"))
	is.NoErr(os.Chmod(outside, 0o555))
	is.NoErr(os.Chmod(ro, 0o555)) // a read-only tree, as Go's module cache leaves
	t.Cleanup(func() { os.Chmod(outside, 0o755) })
	is.NoErr(sp.b.Delete(context.Background(), sp.name)) // removed
	_, err := os.Lstat(sp.dir)
	is.True(errors.Is(err, fs.ErrNotExist)) // the whole tree is gone
	fi, err := os.Stat(outside)
	is.NoErr(err)
	is.Equal(fi.Mode().Perm(), fs.FileMode(0o555)) // the linked host directory kept its mode
	_, err = os.Stat(secret)
	is.NoErr(err) // and its file
}

// A sprite can leave a tree of read-only directories deeper than any real
// one, with an unreadable one at the bottom. Removing the sprite clears it
// all: as an unprivileged server (TestUnprivilegedServer runs this as
// nobody), where permissions bind the server too, nothing is left to hold
// the sprite's disk.
func TestDeleteClearsDeepReadOnlyTrees(t *testing.T) {
	is := is.New(t)
	sp, home, _, _ := hostileSprite(t)
	const depth = 3*heldDirs + 7
	fd, err := unix.Open(home, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	is.NoErr(err) // the sprite's home opens
	var chain []int
	for range depth {
		is.NoErr(unix.Mkdirat(fd, "d", 0o755)) // one level deeper
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		is.NoErr(err) // the new level opens
		chain = append(chain, fd)
		fd = next
	}
	is.NoErr(unix.Mkdirat(fd, "locked", 0o700)) // the bottom: unreadable once locked
	is.NoErr(unix.Fchmodat(fd, "locked", 0, 0))
	is.NoErr(unix.Fchmod(fd, 0o500))
	unix.Close(fd)
	for _, f := range chain {
		is.NoErr(unix.Fchmod(f, 0o500)) // every level read-only
		unix.Close(f)
	}
	is.NoErr(sp.b.Delete(context.Background(), sp.name)) // removed
	_, err = os.Lstat(sp.dir)
	is.True(errors.Is(err, fs.ErrNotExist)) // the whole tree is gone
}
