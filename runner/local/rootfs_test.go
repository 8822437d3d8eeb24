package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/runner/sprite"
	"github.com/matryer/is"
)

// writableBackend is a bubblewrap backend whose sprites have a writable
// root; the test cannot run without one (as root, CI's case).
func writableBackend(t *testing.T) *Backend {
	t.Helper()
	requireBwrap(t)
	if os.Geteuid() != 0 {
		t.Skip("a writable root needs aod to run as root (TestUnprivilegedServer covers the read-only root)")
	}
	lb, err := newBackend(t.TempDir(), Limits{Processes: 4096, FileSizeBytes: 1 << 30, CPUSeconds: 300}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := useBwrapT(t, lb); err != nil {
		t.Fatal(err)
	}
	if lb.rootfs == nil {
		t.Fatalf("as root, sprites get a writable root; here: %s", lb.rootfsWhy)
	}
	return lb
}

// A sprite's root is a machine of its own: it writes /usr/local, /opt, /etc
// and / itself, as its own root, and keeps what it wrote across commands,
// while the host's directories stay as they were and what is private on
// the host stays hidden.
func TestWritableRoot(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := writableBackend(t)
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err) // a sprite
	probe := "aod-probe-" + filepath.Base(t.TempDir())
	code, out := run(t, sp, `set -e
echo one > /usr/local/`+probe+`; mkdir -p /opt/`+probe+` /`+probe+`; echo two > /etc/`+probe+`
test "$(stat -c %u /usr/bin)" = 0 && echo usr-is-roots
test -e /etc/shadow || echo no-shadow
test -e /etc/gshadow || echo no-gshadow
test -s /var/lib/dpkg/status && echo dpkg-database
grep -q '^root:' /etc/passwd && echo passwd
ls /var/lib | grep -qv '^\(apt\|dpkg\)$' && echo "host /var: $(ls /var/lib)" || true`)
	is.Equal(code, 0)                                                             // the writes work
	is.Equal(out, "usr-is-roots\nno-shadow\nno-gshadow\ndpkg-database\npasswd\n") // the host's files seen as the sprite root's, private ones hidden, /var its own
	code, out = run(t, sp, `cat /usr/local/`+probe+` /etc/`+probe+` && test -d /opt/`+probe+` && test -d /`+probe+` && echo kept`)
	is.Equal(code, 0)                 // a later command
	is.Equal(out, "one\ntwo\nkept\n") // sees what the first wrote
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	is.NoErr(err)
	is.True(!strings.Contains(string(mounts), filepath.Join(lb.root, "s1"))) // between commands the host holds no mount of the sprite's
	for _, p := range []string{"/usr/local/" + probe, "/etc/" + probe, "/opt/" + probe, "/" + probe} {
		_, err := os.Lstat(p)
		is.True(os.IsNotExist(err)) // the host never saw the write
	}
	fi, err := os.Stat(filepath.Join(lb.root, "s1", "upper", "usr", "local", probe))
	is.NoErr(err)                                                        // the write is in the sprite's upper layer
	is.Equal(int(fi.Sys().(*syscall.Stat_t).Uid), sp.(*localSprite).uid) // owned by the sprite's root on the host
	is.NoErr(lb.Delete(context.Background(), "s1"))                      // deleting the sprite
	mounts, err = os.ReadFile("/proc/self/mountinfo")
	is.NoErr(err)
	is.True(!strings.Contains(string(mounts), filepath.Join(lb.root, "s1"))) // leaves no mount behind
	_, err = os.Lstat(filepath.Join(lb.root, "s1"))
	is.True(os.IsNotExist(err)) // nor its tree
}

// A restarted server (a new backend on the same data dir, the old one's
// mounts gone) mounts a sprite's root again when it is next used, with
// what the sprite wrote before.
func TestWritableRootAfterRestart(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := writableBackend(t)
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err) // a sprite
	code, _ := run(t, sp, `echo kept > /usr/local/restart-probe`)
	is.Equal(code, 0) // writes its root
	lb.Close()        // the server stops: mounts go
	lb2, err := newBackend(filepath.Dir(lb.root), lb.limits, time.Second)
	is.NoErr(err)
	is.NoErr(useBwrapT(t, lb2))
	sp2, err := lb2.Get(context.Background(), "s1", sprite.Options{})
	is.NoErr(err) // the sprite is found again
	code, out := run(t, sp2, `cat /usr/local/restart-probe`)
	is.Equal(code, 0)       // and runs
	is.Equal(out, "kept\n") // with its root as it left it
}

// apt-get installs a Debian package into a sprite for real (through the
// egress proxy to Debian's mirror), and the host's /usr is unchanged.
func TestAptInstallsIntoTheSprite(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := writableBackend(t)
	if _, err := os.Stat("/usr/games/cowsay"); err == nil {
		t.Fatal("this test installs cowsay into a sprite: the host must not have it")
	}
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{})
	is.NoErr(err) // a sprite
	code, out := run(t, sp, `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cowsay >/dev/null && /usr/games/cowsay moo`,
		egress.ProxyEnv(egress.RelayAddr)...)
	if code != 0 {
		t.Fatalf("apt-get in a sprite: exit %d\n%s", code, out)
	}
	is.True(strings.Contains(out, "< moo >")) // the installed program runs
	_, err = os.Stat("/usr/games/cowsay")
	is.True(os.IsNotExist(err)) // the host's /usr never got it
}

// hiddenEntries lists what an unprivileged user could not read, and the
// data dir, without walking below a hidden directory.
func TestHiddenEntries(t *testing.T) {
	is := is.New(t)
	top := t.TempDir()
	for name, mode := range map[string]os.FileMode{"open": 0o644, "private": 0o600, "group": 0o640} {
		is.NoErr(os.WriteFile(filepath.Join(top, name), nil, mode))
	}
	is.NoErr(os.MkdirAll(filepath.Join(top, "closed", "inner"), 0o755))
	is.NoErr(os.Chmod(filepath.Join(top, "closed"), 0o700))
	is.NoErr(os.MkdirAll(filepath.Join(top, "data", "sprites"), 0o755))
	is.NoErr(os.Symlink("/etc/shadow", filepath.Join(top, "link")))
	got, err := hiddenEntries(top, filepath.Join(top, "data"))
	is.NoErr(err)
	slices.Sort(got)
	want := []string{filepath.Join(top, "closed"), filepath.Join(top, "data"), filepath.Join(top, "group"), filepath.Join(top, "private")}
	is.Equal(got, want) // private files, closed directories (not their insides) and the data dir; links left to their targets
}

// A sprite owns its "/", so it can put links where bubblewrap mounts the
// next command's binds (/aod for the init and the proxy's socket, /srv for
// a repository, /home for the home directory); bwrap, host root, would
// follow them out of the sprite and create mount points on the host. The
// next command starts with those links replaced, and nothing appears on
// the host.
func TestPlantedMountPointLinksAreNotFollowed(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := writableBackend(t)
	sp, err := lb.Create(context.Background(), "s1", sprite.Options{Mounts: []string{"/srv/repo"}})
	is.NoErr(err) // a sprite with a repository outside its home
	targets := map[string]string{}
	var script strings.Builder
	for _, at := range []string{"aod", "srv", "home"} {
		host := t.TempDir() // a host directory the links point at
		targets[at] = host
		fmt.Fprintf(&script, "mv /%s /%s.old && ln -s ../oldroot%s /%s || exit 1\n", at, at, host, at)
	}
	code, out := run(t, sp, script.String()+`test -L /aod && test -L /srv && test -L /home && echo planted`)
	is.Equal(code, 0)          // the links are planted (see out)
	is.Equal(out, "planted\n") // in the sprite's own /
	code, out = run(t, sp, `test -d /srv/repo && test -S /aod/egress.sock && test -x /aod/bin/aod-init && echo mounted`)
	for _, host := range targets {
		entries, err := os.ReadDir(host)
		is.NoErr(err)
		is.Equal(len(entries), 0) // nothing was created on the host through a link
	}
	is.Equal(code, 0)          // the next command starts (see out)
	is.Equal(out, "mounted\n") // with its mounts where they belong
}

// What a build sprite writes to its system directories becomes a package
// layer: later sprites made over it see those files as their root's, read
// only below their own upper layer, while sprites without it do not; a
// layer in use is never collected, an unused one is.
func TestPackageLayers(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	lb := writableBackend(t)
	ctx := context.Background()
	build := BuildSpriteName("env1-v1-abc")
	b, err := lb.Create(ctx, build, sprite.Options{})
	is.NoErr(err) // a build sprite
	code, out := run(t, b, `set -e; printf '#!/bin/sh\necho from-layer\n' > /usr/local/bin/tool; chmod 755 /usr/local/bin/tool
echo conf > /etc/tool.conf; rm /etc/passwd.aod-missing 2>/dev/null || true; chown 42 /etc/tool.conf`)
	is.Equal(code, 0) // it installs (see out)
	_ = out
	is.NoErr(lb.SaveLayer(ctx, build, "env1-v1-abc")) // saved as a layer
	is.True(lb.HasLayer("env1-v1-abc"))               // which exists
	_, err = os.Lstat(filepath.Join(lb.root, build))
	is.True(os.IsNotExist(err)) // and the build sprite is gone
	fi, err := os.Lstat(filepath.Join(LayersDir(filepath.Dir(lb.root)), "env1-v1-abc", "usr", "local", "bin", "tool"))
	is.NoErr(err)
	is.Equal(fi.Sys().(*syscall.Stat_t).Uid, uint32(0)) // the layer's files belong to the host's ids, counted from 0

	sp, err := lb.Create(ctx, "s1", sprite.Options{Layer: "env1-v1-abc"})
	is.NoErr(err) // a sprite over the layer
	code, out = run(t, sp, `tool && stat -c '%u %U' /usr/local/bin/tool /etc/tool.conf && echo mine > /usr/local/bin/tool && cat /usr/local/bin/tool`)
	is.Equal(code, 0)                                    // runs (see out)
	is.Equal(out, "from-layer\n0 root\n42 _apt\nmine\n") // the layer's files, owned as they were in the build, writable as its own
	other, err := lb.Create(ctx, "s2", sprite.Options{})
	is.NoErr(err)
	code, _ = run(t, other, `test -e /usr/local/bin/tool`)
	is.Equal(code, 1) // a sprite without the layer does not have it
	layerTool, err := os.ReadFile(filepath.Join(LayersDir(filepath.Dir(lb.root)), "env1-v1-abc", "usr", "local", "bin", "tool"))
	is.NoErr(err)
	is.Equal(string(layerTool), "#!/bin/sh\necho from-layer\n") // the sprite's write went to its own upper layer

	listed, err := ListLayers(filepath.Dir(lb.root), "env1-")
	is.NoErr(err)
	is.Equal(len(listed), 1)              // an environment's layers are listed
	is.True(listed[0].InUse)              // in use by s1
	is.True(listed[0].Bytes > 0)          // with their size
	is.True(!listed[0].LastUsed.IsZero()) // and when they were last used
	listed, err = ListLayers(filepath.Dir(lb.root), "env2-")
	is.NoErr(err)
	is.Equal(len(listed), 0) // another environment's are not

	got, err := CollectLayers(filepath.Dir(lb.root), 0)
	is.NoErr(err)
	is.Equal(len(got), 1)
	is.True(got[0].InUse && !got[0].Removed) // a layer a sprite is made over stays
	is.NoErr(lb.Delete(ctx, "s1"))
	got, err = CollectLayers(filepath.Dir(lb.root), time.Hour)
	is.NoErr(err)
	is.True(!got[0].InUse && !got[0].Removed) // an unused one within the retention stays
	got, err = CollectLayers(filepath.Dir(lb.root), 0)
	is.NoErr(err)
	is.True(got[0].Removed)              // past it, it goes
	is.True(!lb.HasLayer("env1-v1-abc")) // for good
}
