package runner

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/store"
	"github.com/matryer/is"
)

// gitIn runs the host's git with only the config file at home/.gitconfig
// (no system config) and env added; it returns the trimmed output and
// whether git succeeded.
func gitIn(t *testing.T, home string, stdin string, env []string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Env = append([]string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err == nil
}

// The git config names a helper for each repository with a token, and git
// (the real one) finds it for that repository's URLs and no other.
func TestGitConfigScopesTheHelperToEachRepository(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is not installed: %v", err)
	}
	resources := []store.Resource{
		{URL: "https://github.com/acme/public"},
		{URL: "https://github.com/acme/private", Token: "tok-private"},
		{URL: "https://github.com/acme/lib", Token: "tok-lib"},
		{URL: "https://github.com/acme/private", Token: "tok-second"}, // the first one wins
	}
	for _, sandboxed := range []bool{true, false} {
		t.Run(map[bool]string{true: "bwrap", false: "none"}[sandboxed], func(t *testing.T) {
			is := is.New(t)
			home := t.TempDir()
			is.NoErr(os.WriteFile(filepath.Join(home, ".gitconfig"), gitConfig(resources, sandboxed), 0o644)) // the sprite's config
			helperOf := func(i int) string {
				if sandboxed {
					return local.GitCredentialHelper
				}
				return envHelper(i)
			}
			for _, tc := range []struct {
				url    string
				helper string // "": none
			}{
				{"https://github.com/acme/private", helperOf(1)},
				{"https://github.com/acme/private.git", helperOf(1)},
				{"https://github.com/acme/lib.git", helperOf(2)},
				{"https://github.com/acme/public", ""},
				{"https://github.com/acme/privateer", ""},
				{"https://github.com/acme", ""},
				{"https://gitlab.com/acme/private", ""},
				{"http://github.com/acme/private", ""},
			} {
				got, ok := gitIn(t, home, "", nil, "config", "--get-urlmatch", "credential.helper", tc.url)
				is.Equal(ok, tc.helper != "") // a helper is configured for the URL or not (see tc.url)
				is.Equal(got, tc.helper)      // aod's (see tc.url)
				if tc.helper != "" {
					path, _ := gitIn(t, home, "", nil, "config", "--get-urlmatch", "credential.useHttpPath", tc.url)
					is.Equal(path, "true") // git tells the helper which repository it asks for
				}
			}
			data, _ := os.ReadFile(filepath.Join(home, ".gitconfig"))
			is.True(!strings.Contains(string(data), "tok-")) // no token in the file
		})
	}
}

// Without a sandbox the helper reads the token from the environment, and
// git hands it over for the repository's URL only.
func TestUnsandboxedHelperReadsTheEnvironment(t *testing.T) {
	is := is.New(t)
	home := t.TempDir()
	resources := []store.Resource{{URL: "https://github.com/acme/private", Token: "tok-private"}}
	is.NoErr(os.WriteFile(filepath.Join(home, ".gitconfig"), gitConfig(resources, false), 0o644)) // the sprite's config
	env := []string{tokenVar(0) + "=tok-private"}
	out, ok := gitIn(t, home, "protocol=https\nhost=github.com\npath=acme/private.git\n\n", env, "credential", "fill")
	is.True(ok)                                                    // git got a credential
	is.True(strings.Contains(out, "\npassword=tok-private"))       // the token from the environment
	is.True(strings.Contains(out, "\nusername="+gitUsername+"\n")) // with aod's username
	_, ok = gitIn(t, home, "protocol=https\nhost=github.com\npath=acme/other\n\n", env, "credential", "fill")
	is.True(!ok) // another repository gets nothing
}

func TestRepoToken(t *testing.T) {
	resources := []store.Resource{
		{URL: "https://github.com/acme/public"},
		{URL: "https://github.com/acme/private", Token: "tok-private"},
		{URL: "https://github.com/acme/broken", Token: "line\nbreak"},
		{URL: "https://github.com/acme/private", Token: "tok-second"},
	}
	for _, tc := range []struct {
		name string
		ask  local.GitCredential
		want string // "": nothing
	}{
		{"its repository", local.GitCredential{Protocol: "https", Host: "github.com", Path: "acme/private"}, "tok-private"},
		{"with .git", local.GitCredential{Protocol: "https", Host: "github.com", Path: "acme/private.git"}, "tok-private"},
		{"another case", local.GitCredential{Protocol: "https", Host: "GitHub.com", Path: "Acme/Private"}, "tok-private"},
		{"slashes around", local.GitCredential{Protocol: "https", Host: "github.com", Path: "/acme/private/"}, "tok-private"},
		{"no path", local.GitCredential{Protocol: "https", Host: "github.com"}, ""},
		{"another repository", local.GitCredential{Protocol: "https", Host: "github.com", Path: "acme/other"}, ""},
		{"a repository without a token", local.GitCredential{Protocol: "https", Host: "github.com", Path: "acme/public"}, ""},
		{"a token that would break git's format", local.GitCredential{Protocol: "https", Host: "github.com", Path: "acme/broken"}, ""},
		{"plain http", local.GitCredential{Protocol: "http", Host: "github.com", Path: "acme/private"}, ""},
		{"another host", local.GitCredential{Protocol: "https", Host: "evil.example", Path: "acme/private"}, ""},
		{"another port", local.GitCredential{Protocol: "https", Host: "github.com:8443", Path: "acme/private"}, ""},
		{"a subdomain", local.GitCredential{Protocol: "https", Host: "gist.github.com", Path: "acme/private"}, ""},
		{"a deeper path", local.GitCredential{Protocol: "https", Host: "github.com", Path: "acme/private/x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			got, ok := repoToken(resources, tc.ask)
			is.Equal(ok, tc.want != "") // answered or not
			is.Equal(got, tc.want)      // with the first matching resource's token
		})
	}
}

func TestCloneScript(t *testing.T) {
	sha1 := strings.Repeat("0123456789", 4)
	sha256 := strings.Repeat("abcdef0123456789", 4)
	for _, tc := range []struct {
		name, checkout, want string
	}{
		{"default branch", "", "git clone --depth=1 --quiet https://github.com/o/r /w/r\n"},
		{"branch", "feature/x", "git clone --depth=1 --quiet --branch feature/x https://github.com/o/r /w/r || " +
			"{ echo 'checkout feature/x: no such branch or tag in https://github.com/o/r (or the repository cannot be read)' >&2; exit 1; }\n"},
		{"tag", "v1.0", "git clone --depth=1 --quiet --branch v1.0 https://github.com/o/r /w/r || " +
			"{ echo 'checkout v1.0: no such branch or tag in https://github.com/o/r (or the repository cannot be read)' >&2; exit 1; }\n"},
		{"a name that needs quoting", "it's", "git clone --depth=1 --quiet --branch 'it'\"'\"'s' https://github.com/o/r /w/r || " +
			"{ echo 'checkout it'\"'\"'s: no such branch or tag in https://github.com/o/r (or the repository cannot be read)' >&2; exit 1; }\n"},
		{"hex too short for a commit", sha1[:39], "git clone --depth=1 --quiet --branch " + sha1[:39] + " https://github.com/o/r /w/r || " +
			"{ echo 'checkout " + sha1[:39] + ": no such branch or tag in https://github.com/o/r (or the repository cannot be read)' >&2; exit 1; }\n"},
		{"SHA-1 commit", sha1, "git -c init.defaultBranch=main init --quiet /w/r\n" +
			"git -C /w/r remote add origin https://github.com/o/r\n" +
			"git -C /w/r fetch --depth=1 --quiet origin " + sha1 + " || " +
			"{ echo 'checkout " + sha1 + ": no such commit in https://github.com/o/r (or the repository cannot be read)' >&2; exit 1; }\n" +
			"git -C /w/r -c advice.detachedHead=false checkout --quiet FETCH_HEAD\n"},
		{"SHA-256 commit", sha256, "git -c init.defaultBranch=main init --quiet /w/r\n" +
			"git -C /w/r remote add origin https://github.com/o/r\n" +
			"git -C /w/r fetch --depth=1 --quiet origin " + sha256 + " || " +
			"{ echo 'checkout " + sha256 + ": no such commit in https://github.com/o/r (or the repository cannot be read)' >&2; exit 1; }\n" +
			"git -C /w/r -c advice.detachedHead=false checkout --quiet FETCH_HEAD\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			got := cloneScript(store.Resource{URL: "https://github.com/o/r", Checkout: tc.checkout, Token: "tok"}, "/w/r")
			is.Equal(got, tc.want+"git -C /w/r update-ref refs/aod/base HEAD\n") // the clone's lines, then the commit the diff is against
			is.True(!strings.Contains(got, "tok"))                               // never the token
		})
	}
}
