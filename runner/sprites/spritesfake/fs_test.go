package spritesfake_test

import (
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner/sprites/spritesfake"
)

func fsPath(op string, q url.Values) string {
	return "/v1/sprites/s/fs/" + op + "?" + q.Encode()
}

// wantFSError checks the filesystem error body of §6.3.
func wantFSError(t *testing.T, what string, status int, body []byte, wantCode int, code string) {
	t.Helper()
	wantStatus(t, what, status, wantCode, body)
	m := decode(t, body)
	if m["code"] != code {
		t.Fatalf("%s: code %v, want %s (body %s)", what, m["code"], code, body)
	}
	if s, _ := m["error"].(string); s == "" {
		t.Fatalf("%s: no error message: %s", what, body)
	}
	if _, ok := m["path"]; !ok {
		t.Fatalf("%s: no path: %s", what, body)
	}
}

func listEntries(t *testing.T, f *spritesfake.Fake, q url.Values) map[string]map[string]any {
	t.Helper()
	st, _, b := call(t, f, "GET", fsPath("list", q), nil)
	wantStatus(t, "list "+q.Encode(), st, http.StatusOK, b)
	m := decode(t, b)
	entries := m["entries"].([]any)
	if m["count"] != float64(len(entries)) {
		t.Errorf("count %v for %d entries", m["count"], len(entries))
	}
	out := map[string]map[string]any{}
	for _, e := range entries {
		e := e.(map[string]any)
		out[e["path"].(string)] = e
	}
	return out
}

// Write with mode and parents, read back, list with its fields, chmod,
// rename, delete, and the error codes.
func TestFSRoundTrip(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{})
	mkSprite(t, f, "s")
	root := f.SpriteDir("s")

	st, _, b := call(t, f, "PUT", fsPath("write", url.Values{"path": {"/home/sprite/a/b/c.txt"}, "mkdirParents": {"true"}, "mode": {"0600"}}), "hello")
	wantStatus(t, "write", st, http.StatusOK, b)
	if fi, err := os.Stat(filepath.Join(root, "home/sprite/a/b/c.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("written file on the host: %v, %v", fi, err)
	}
	st, h, b := call(t, f, "GET", fsPath("read", url.Values{"path": {"/home/sprite/a/b/c.txt"}}), nil)
	wantStatus(t, "read", st, http.StatusOK, b)
	if string(b) != "hello" || h.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("read %q (%s)", b, h.Get("Content-Type"))
	}
	// Relative to workingDir; an overwrite keeps the mode.
	st, _, b = call(t, f, "PUT", fsPath("write", url.Values{"path": {"b/c.txt"}, "workingDir": {"/home/sprite/a"}}), "bye")
	wantStatus(t, "overwrite", st, http.StatusOK, b)
	st, _, b = call(t, f, "GET", fsPath("read", url.Values{"path": {"/home/sprite/a/b/c.txt"}}), nil)
	if string(b) != "bye" {
		t.Errorf("read after overwrite %q", b)
	}
	// New files default to 0644.
	call(t, f, "PUT", fsPath("write", url.Values{"path": {"/workspace/d.sh"}}), "#!/bin/sh\n")
	if err := os.Symlink("/home/sprite/a", filepath.Join(root, "workspace/link")); err != nil {
		t.Fatal(err)
	}

	entries := listEntries(t, f, url.Values{"path": {"/home/sprite/a"}, "recursive": {"true"}})
	dir, file := entries["/home/sprite/a/b"], entries["/home/sprite/a/b/c.txt"]
	if len(entries) != 2 || dir == nil || file == nil {
		t.Fatalf("recursive listing %v", entries)
	}
	if dir["name"] != "b" || dir["type"] != "directory" || dir["isDir"] != true || dir["mode"] != "0755" {
		t.Errorf("dir entry %v", dir)
	}
	if file["name"] != "c.txt" || file["type"] != "file" || file["isDir"] != false || file["mode"] != "0600" || file["size"] != float64(3) {
		t.Errorf("file entry %v", file)
	}
	if mt, err := time.Parse(time.RFC3339, file["modTime"].(string)); err != nil || time.Since(mt) > time.Minute {
		t.Errorf("modTime %v: %v", file["modTime"], err)
	}
	entries = listEntries(t, f, url.Values{"path": {"/workspace"}})
	if e := entries["/workspace/d.sh"]; e == nil || e["mode"] != "0644" {
		t.Errorf("default mode entry %v", e)
	}
	if e := entries["/workspace/link"]; e == nil || e["type"] != "symlink" || e["isDir"] != false {
		t.Errorf("link entry %v", e)
	}
	entries = listEntries(t, f, url.Values{"path": {"/home"}, "recursive": {"true"}, "pattern": {"*.txt"}})
	if len(entries) != 1 || entries["/home/sprite/a/b/c.txt"] == nil {
		t.Errorf("pattern listing %v", entries)
	}
	// A path that is a file lists that file; a link is described, not
	// followed.
	entries = listEntries(t, f, url.Values{"path": {"/workspace/link"}})
	if len(entries) != 1 || entries["/workspace/link"]["type"] != "symlink" {
		t.Errorf("listing of a link %v", entries)
	}
	// Links inside the sprite are followed for reads, as on a machine.
	st, _, b = call(t, f, "GET", fsPath("read", url.Values{"path": {"/workspace/link/b/c.txt"}}), nil)
	if st != http.StatusOK || string(b) != "bye" {
		t.Errorf("read through a link inside the sprite: %d %q", st, b)
	}

	st, _, b = call(t, f, "POST", "/v1/sprites/s/fs/chmod", map[string]any{"path": "/workspace/d.sh", "mode": "0755"})
	wantStatus(t, "chmod", st, http.StatusNoContent, b)
	if fi, _ := os.Stat(filepath.Join(root, "workspace/d.sh")); fi.Mode().Perm() != 0o755 {
		t.Errorf("chmod left mode %v", fi.Mode())
	}
	st, _, b = call(t, f, "POST", "/v1/sprites/s/fs/chmod", map[string]any{"path": "/workspace/d.sh", "mode": "9"})
	wantFSError(t, "chmod bad mode", st, b, http.StatusBadRequest, "EINVAL")
	st, _, b = call(t, f, "POST", "/v1/sprites/s/fs/rename", map[string]any{"source": "/workspace/d.sh", "dest": "/workspace/e.sh"})
	wantStatus(t, "rename", st, http.StatusNoContent, b)
	if _, err := os.Stat(filepath.Join(root, "workspace/e.sh")); err != nil {
		t.Errorf("rename: %v", err)
	}

	st, _, b = call(t, f, "GET", fsPath("read", url.Values{"path": {"/nope"}}), nil)
	wantFSError(t, "read missing", st, b, http.StatusNotFound, "ENOENT")
	st, _, b = call(t, f, "GET", fsPath("read", url.Values{"path": {"/home/sprite"}}), nil)
	wantFSError(t, "read a dir", st, b, http.StatusBadRequest, "EISDIR")
	st, _, b = call(t, f, "PUT", fsPath("write", url.Values{"path": {"/workspace/no/such/f"}}), "x")
	wantFSError(t, "write without parents", st, b, http.StatusNotFound, "ENOENT")
	st, _, b = call(t, f, "GET", fsPath("list", url.Values{"path": {"/nope"}}), nil)
	wantFSError(t, "list missing", st, b, http.StatusNotFound, "ENOENT")
	st, _, b = call(t, f, "DELETE", fsPath("delete", url.Values{"path": {"/home/sprite/a"}}), nil)
	wantFSError(t, "delete non-empty without recursive", st, b, http.StatusBadRequest, "ENOTEMPTY")
	st, _, b = call(t, f, "DELETE", fsPath("delete", url.Values{"path": {"/workspace"}, "recursive": {"true"}}), nil)
	wantFSError(t, "delete a mount point", st, b, http.StatusForbidden, "EPERM")
	st, _, b = call(t, f, "DELETE", fsPath("delete", url.Values{"path": {"/home/sprite/a"}, "recursive": {"true"}}), nil)
	wantStatus(t, "delete recursive", st, http.StatusNoContent, b)
	if _, err := os.Stat(filepath.Join(root, "home/sprite/a")); !os.IsNotExist(err) {
		t.Errorf("recursive delete left %v", err)
	}
	st, _, b = call(t, f, "DELETE", fsPath("delete", url.Values{"path": {"/home/sprite/a"}}), nil)
	wantFSError(t, "delete missing", st, b, http.StatusNotFound, "ENOENT")
	st, _, b = call(t, f, "GET", "/v1/sprites/nope/fs/read?path=/x", nil)
	wantError(t, "fs of a missing sprite", st, b, http.StatusNotFound, "not_found")
}

// No path, "..", absolute link or link out of the sprite reaches the
// host: everything resolves inside the sprite's root, as on its machine.
func TestFSContainment(t *testing.T) {
	t.Parallel()
	f := spritesfake.New(t, spritesfake.Options{})
	mkSprite(t, f, "s")
	root := f.SpriteDir("s")
	host := t.TempDir() // stands for any host directory
	secret := filepath.Join(host, "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Links a command in the sprite could make.
	rel, err := filepath.Rel(filepath.Join(root, "workspace"), host)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"etc":      "/etc",     // absolute, to a host system dir
		"out":      host,       // absolute, to the host dir
		"up":       rel,        // relative, climbing out to the host dir
		"secretln": secret,     // absolute, to the host file
		"dots":     "../../..", // relative, above the root
	} {
		if err := os.Symlink(target, filepath.Join(root, "workspace", name)); err != nil {
			t.Fatal(err)
		}
	}

	for _, p := range []string{
		"/../../../../../etc/passwd", "../../../etc/passwd", "/workspace/etc/passwd", "/workspace/out/secret",
		"/workspace/up/secret", "/workspace/secretln", "/workspace/dots/etc/passwd",
		strings.TrimPrefix(secret, "/"), secret,
	} {
		st, _, b := call(t, f, "GET", fsPath("read", url.Values{"path": {p}, "workingDir": {"/workspace"}}), nil)
		if strings.Contains(string(b), "host secret") || strings.Contains(string(b), "root:") {
			t.Fatalf("read %s reached the host: %q", p, b)
		}
		wantFSError(t, "read "+p, st, b, http.StatusNotFound, "ENOENT")
	}

	// Writes through links out fail as on the sprite's machine, where
	// their targets do not exist, or land inside the sprite.
	for _, p := range []string{"/workspace/out/pwn", "/workspace/up/pwn", "/workspace/etc/pwn"} {
		st, _, b := call(t, f, "PUT", fsPath("write", url.Values{"path": {p}, "mkdirParents": {"true"}}), "x")
		wantFSError(t, "write "+p, st, b, http.StatusNotFound, "ENOENT")
	}
	// The relative link resolves from /workspace, its ".." stopping at
	// the sprite's root.
	upTarget := path.Clean("/workspace/" + rel)
	for _, p := range []string{"/etc/.keep", host + "/.keep", upTarget + "/.keep"} { // make the targets in the sprite
		st, _, b := call(t, f, "PUT", fsPath("write", url.Values{"path": {p}, "mkdirParents": {"true"}}), "")
		wantStatus(t, "write "+p, st, http.StatusOK, b)
	}
	for _, p := range []string{"/workspace/out/pwn", "/workspace/up/pwn", "/workspace/etc/pwn", "/../../pwn"} {
		st, _, b := call(t, f, "PUT", fsPath("write", url.Values{"path": {p}}), "x")
		wantStatus(t, "write "+p, st, http.StatusOK, b)
	}
	if _, err := os.Stat(filepath.Join(host, "pwn")); !os.IsNotExist(err) {
		t.Fatalf("a write reached the host dir: %v", err)
	}
	if _, err := os.Stat("/etc/pwn"); !os.IsNotExist(err) {
		t.Fatalf("a write reached the host /etc: %v", err)
	}
	for _, p := range []string{filepath.Join(host, "pwn"), upTarget + "/pwn", "etc/pwn", "pwn"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("write through a link did not land in the sprite at %s: %v", p, err)
		}
	}
	// Overwriting through a link to a host file stays inside too.
	st, _, b := call(t, f, "PUT", fsPath("write", url.Values{"path": {"/workspace/secretln"}, "mode": {"0777"}}), "y")
	wantFSError(t, "write through a dangling link", st, b, http.StatusNotFound, "ENOENT")

	st, _, b = call(t, f, "POST", "/v1/sprites/s/fs/chmod", map[string]any{"path": "/workspace/secretln", "mode": "0777"})
	wantFSError(t, "chmod through a link out", st, b, http.StatusNotFound, "ENOENT")
	st, _, b = call(t, f, "POST", "/v1/sprites/s/fs/chmod", map[string]any{"path": "/workspace", "mode": "0755", "recursive": true})
	wantStatus(t, "recursive chmod over links", st, http.StatusNoContent, b)

	entries := listEntries(t, f, url.Values{"path": {"/workspace/out"}})
	if len(entries) != 1 || entries["/workspace/out"]["type"] != "symlink" {
		t.Errorf("listing a link out: %v", entries)
	}
	entries = listEntries(t, f, url.Values{"path": {"/workspace"}, "recursive": {"true"}})
	for p := range entries {
		if strings.HasPrefix(p, "/workspace/out/") || strings.HasPrefix(p, "/workspace/etc/") {
			t.Errorf("recursive listing followed a link: %s", p)
		}
	}
	for _, p := range []string{"/workspace/out", "/workspace/etc", "/workspace/secretln"} {
		st, _, b := call(t, f, "DELETE", fsPath("delete", url.Values{"path": {p}, "recursive": {"true"}}), nil)
		wantStatus(t, "delete "+p, st, http.StatusNoContent, b)
	}
	st, _, b = call(t, f, "POST", "/v1/sprites/s/fs/rename", map[string]any{"source": "/workspace/up", "dest": "/../../../tmp/x"})
	wantStatus(t, "rename with ..", st, http.StatusNoContent, b)
	if _, err := os.Lstat(filepath.Join(root, "tmp/x")); err != nil {
		t.Errorf("rename with .. did not stay in the sprite: %v", err)
	}

	if b, err := os.ReadFile(secret); err != nil || string(b) != "host secret" {
		t.Fatalf("host file changed: %q, %v", b, err)
	}
	if fi, _ := os.Stat(secret); fi.Mode().Perm() != 0o600 {
		t.Fatalf("host file mode changed: %v", fi.Mode())
	}
	if fi, err := os.Stat("/etc"); err != nil || !fi.IsDir() {
		t.Fatalf("host /etc: %v", err)
	}
}
