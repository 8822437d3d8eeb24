package runner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

func TestSandboxHidesTheDataDirAndKeepsSecretsOffDisk(t *testing.T) {
	requireBwrap(t)
	is := is.New(t)
	f := newFixture(t, Config{Sandbox: SandboxBwrap})
	is.Equal(f.r.Sandbox(), SandboxBwrap) // sessions run under bubblewrap

	other := f.run("echo private > other.txt\n", sessionOpts{})
	is.Equal(f.wait(other.ID).Status, store.StatusCompleted)                   // another session left a file in its sprite
	is.True(exists(filepath.Join(f.spriteDir(other.ID), "home", "other.txt"))) // on the host, in its sprite dir

	const envSecret = "env-secret-6f1d9a0c2b7e"
	const sessionSecret = "session-secret-93be4c11d8aa"
	env, err := f.db.CreateEnvironment(f.ctx, f.user.ID, store.EnvironmentInput{
		Name: "secrets", EnvVars: map[string]string{"ENV_SECRET": envSecret}, Networking: store.Networking{Type: "unrestricted"},
	})
	is.NoErr(err) // an environment with a secret env var
	d := f.dir
	script := `for p in "` + d + `/aod.db" "` + d + `/aod.key" "` + d + `/sprites/` + other.ID + `/home/other.txt" "` +
		d + `/sprites/` + other.ID + `"; do
  if cat "$p" >/dev/null 2>&1; then echo "READ $p"; else echo "DENIED"; fi
done
if ls "` + d + `" >/dev/null 2>&1; then echo LISTED; else echo NOLIST; fi
if ls "` + filepath.Dir(d) + `" >/dev/null 2>&1; then echo LISTED-PARENT; else echo NOLIST-PARENT; fi
printf %s "$ENV_SECRET" | sha256sum | cut -c1-64
printf %s "$SESSION_SECRET" | sha256sum | cut -c1-64
ls -a / | tr '\n' ' '; echo
`
	s := f.run(script, sessionOpts{environmentID: env.ID, secrets: map[string]string{"SESSION_SECRET": sessionSecret}})
	done := f.wait(s.ID)
	is.Equal(done.Status, store.StatusCompleted) // the probing script ran to the end
	out, _ := f.output(s.ID, 1)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	is.Equal(len(lines), 9)                // one line per probe
	is.Equal(lines[0], "DENIED")           // aod.db is not readable inside the sprite
	is.Equal(lines[1], "DENIED")           // nor the key file
	is.Equal(lines[2], "DENIED")           // nor another session's files
	is.Equal(lines[3], "DENIED")           // nor its directory
	is.Equal(lines[4], "NOLIST")           // the data dir cannot be listed
	is.Equal(lines[5], "NOLIST-PARENT")    // nor the directory holding it
	is.Equal(lines[6], sha(envSecret))     // the environment's env var reached the process
	is.Equal(lines[7], sha(sessionSecret)) // so did the session's secret
	for _, name := range strings.Fields(lines[8]) {
		is.True(name != "sprites" && name != "aod.db" && name != "aod.key") // the sandbox root holds nothing of aod's
	}

	// Neither secret appears in any file under the data dir (which holds
	// every sprite dir too): the store encrypts them and the runner never
	// writes them.
	f.r.Shutdown(f.ctx, 0)
	checked := 0
	err = filepath.WalkDir(f.dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		checked++
		is.True(!bytes.Contains(b, []byte(envSecret)))     // the env var is nowhere on disk (see p)
		is.True(!bytes.Contains(b, []byte(sessionSecret))) // nor the session secret
		return nil
	})
	is.NoErr(err)         // walk the data dir
	is.True(checked >= 3) // the database, the key file and the sprite files were read
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
