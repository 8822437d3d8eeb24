package local

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// The files API's reads stay in the sprite: a directory lists files, dirs
// and symlinks (with their targets) without following any; a symlink, a
// path through one, or ".." never opens or lists what is outside.
func TestFilesStayInTheSprite(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	sp, home, outside, secret := hostileSprite(t)
	is.NoErr(os.WriteFile(filepath.Join(home, "a.txt"), []byte("hello\n"), 0o640))
	is.NoErr(os.MkdirAll(filepath.Join(home, "dir"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(home, "dir", "b.txt"), []byte("b"), 0o600))
	plant(t, secret, filepath.Join(home, "secret-link"))
	plant(t, outside, filepath.Join(home, "dir-link"))

	list, err := sp.ReadDir(ctx, sprite.HomeDir)
	is.NoErr(err) // the home directory lists
	byName := map[string]sprite.FileInfo{}
	for _, fi := range list {
		byName[fi.Name] = fi
	}
	is.Equal(byName["a.txt"].Type, sprite.TypeFile)          // a file
	is.Equal(byName["a.txt"].Size, int64(6))                 // with its size
	is.Equal(byName["a.txt"].Mode, fs.FileMode(0o640))       // and mode
	is.Equal(byName["dir"].Type, sprite.TypeDir)             // a directory
	is.Equal(byName["secret-link"].Type, sprite.TypeSymlink) // a symlink, listed
	is.Equal(byName["secret-link"].Target, secret)           // with its target

	f, fi, err := sp.Open(ctx, sprite.HomeDir+"/dir/b.txt")
	is.NoErr(err) // a file opens
	b, _ := io.ReadAll(f)
	f.Close()
	is.Equal(string(b), "b")    // with its bytes
	is.Equal(fi.Size, int64(1)) // and size

	for _, p := range []string{
		sprite.HomeDir + "/secret-link",        // a symlink to a host file
		sprite.HomeDir + "/dir-link/host-file", // a path through a symlinked directory
		sprite.HomeDir + "/../../" + secret,    // ".." out of the sprite
		secret,                                 // a host path
	} {
		_, _, err := sp.Open(ctx, p)
		is.True(errors.Is(err, fs.ErrNotExist)) // is not there, as far as the API can tell
	}
	_, err = sp.ReadDir(ctx, sprite.HomeDir+"/dir-link")
	is.True(errors.Is(err, fs.ErrNotExist)) // a symlinked directory is not listed through
	_, err = sp.ReadDir(ctx, "/etc")
	is.True(errors.Is(err, fs.ErrNotExist)) // nor a path outside the sprite
	st, err := sp.Stat(ctx, sprite.HomeDir+"/dir-link")
	is.NoErr(err)
	is.Equal(st.Type, sprite.TypeSymlink) // Stat describes the link itself
	st, err = sp.Stat(ctx, sprite.HomeDir)
	is.NoErr(err)
	is.Equal(st.Type, sprite.TypeDir) // and the home directory
}
