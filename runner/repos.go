package runner

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/aod/aod/runner/local"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// A session's repositories stay usable after provisioning: git in the
// sprite asks for a repository's token whenever it needs one (clone, fetch,
// push, in any turn) through a credential helper that the sprite's git
// config names for that repository's URL alone. Under bubblewrap the helper
// is aod's own binary, which asks the server over the sprite's socket and
// gets the token of the resource with exactly that URL (see
// Runner.gitCredential and runner/local/gitcred.go); without a sandbox
// there is no socket, and each process's environment carries the tokens
// (tokenVar) for a helper that prints them. Either way the token is never
// written to a file.

// gitConfigPath is the sprite's global git config, written at provisioning
// (git_credentials) before the clones; the setup script and the agent may
// add to it.
const gitConfigPath = sprite.HomeDir + "/.gitconfig"

// gitUsername is the username git sends with a repository token (GitHub
// takes any for a token; this one is what its apps use).
const gitUsername = "x-access-token"

// commitRE is a checkout that names a commit: a full object id (SHA-1 or
// SHA-256). Anything else is a branch or tag name.
var commitRE = regexp.MustCompile(`^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$`)

func tokenVar(i int) string { return fmt.Sprintf("AOD_GIT_TOKEN_%d", i) }

// tokenProblem says why a token cannot be handed to git (its credential
// format is one key=value per line), "" when it can.
func tokenProblem(token string) string {
	if strings.ContainsAny(token, "\r\n\x00") {
		return "the authorization token contains a line break"
	}
	return ""
}

// envHelper is the credential helper of an unsandboxed sprite: it prints
// resource i's token from the process environment.
func envHelper(i int) string {
	return `!f() { test "$1" = get || return 0; echo username=` + gitUsername + `; echo "password=$` + tokenVar(i) + `"; }; f`
}

// gitConfig is the sprite's git config: for each repository with a token,
// under its URL (with and without ".git", as git matches a configured URL
// by path prefix), a credential helper that replaces any the host
// configures, asked with the repository's path. sandboxed says whether the
// helper is aod's (bubblewrap) or envHelper.
func gitConfig(resources []store.Resource, sandboxed bool) []byte {
	var b strings.Builder
	b.WriteString("# Written by aod: git asks aod for the session's repository tokens; none is stored here.\n")
	seen := map[string]bool{}
	for i, res := range resources {
		if res.Token == "" || seen[res.URL] {
			continue
		}
		seen[res.URL] = true
		helper := local.GitCredentialHelper
		if !sandboxed {
			helper = envHelper(i)
		}
		for _, u := range []string{res.URL, res.URL + ".git"} {
			fmt.Fprintf(&b, "[credential %s]\n\thelper = \"\"\n\thelper = %s\n\tuseHttpPath = true\n", gitQuote(u), gitQuote(helper))
		}
	}
	return []byte(b.String())
}

// gitQuote quotes s as a git config value or subsection name.
func gitQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// repoToken is the token of the first resource with one whose URL is the
// repository c asks about: the same protocol and host, and the same
// owner/repo path (GitHub's are case-insensitive; ".git" or not). A request
// without a path matches nothing.
func repoToken(resources []store.Resource, c local.GitCredential) (string, bool) {
	want := repoPath(c.Path)
	if want == "" {
		return "", false
	}
	for _, res := range resources {
		if res.Token == "" || tokenProblem(res.Token) != "" {
			continue
		}
		u, err := url.Parse(res.URL)
		if err != nil {
			continue
		}
		if c.Protocol == u.Scheme && strings.EqualFold(c.Host, u.Host) && want == repoPath(u.Path) {
			return res.Token, true
		}
	}
	return "", false
}

func repoPath(p string) string {
	return strings.ToLower(strings.TrimSuffix(strings.Trim(p, "/"), ".git"))
}

// gitCredential answers the credential helper of session's sprite (a
// sprite's name is its session's id): the token of the session's
// repository c names, decrypted for this answer, or nothing.
func (r *Runner) gitCredential(ctx context.Context, session string, c local.GitCredential) (string, string, bool) {
	_, resources, err := r.db.SessionSecrets(ctx, session)
	if err != nil {
		if store.ErrorCode(err) != store.NotFound {
			r.log.Error("reading repository tokens", "session", session, "err", err)
		}
		return "", "", false
	}
	token, ok := repoToken(resources, c)
	r.log.Debug("git credential asked", "session", session, "protocol", c.Protocol, "host", c.Host, "path", c.Path, "answered", ok)
	return gitUsername, token, ok
}

// cloneScript is the provisioning script's lines that check repository
// res out at target (as the sprite's processes see it): shallow, at its
// checkout when it names one. A branch or tag is cloned with --branch; a
// commit is fetched by id into a new repository. Either way a checkout
// that is not there fails with a line saying so.
func cloneScript(res store.Resource, target string) string {
	repo, dir := shellQuote(res.URL), shellQuote(target)
	ref := res.Checkout
	// The commit cloned is kept as refs/aod/base: the session's diff is
	// against it.
	base := fmt.Sprintf("git -C %s update-ref %s HEAD\n", dir, baseRef)
	switch {
	case ref == "":
		return fmt.Sprintf("git clone --depth=1 --quiet %s %s\n", repo, dir) + base
	case commitRE.MatchString(ref):
		missing := shellQuote(fmt.Sprintf("checkout %s: no such commit in %s (or the repository cannot be read)", ref, res.URL))
		return fmt.Sprintf("git -c init.defaultBranch=main init --quiet %s\n", dir) +
			fmt.Sprintf("git -C %s remote add origin %s\n", dir, repo) +
			fmt.Sprintf("git -C %s fetch --depth=1 --quiet origin %s || { echo %s >&2; exit 1; }\n", dir, ref, missing) +
			fmt.Sprintf("git -C %s -c advice.detachedHead=false checkout --quiet FETCH_HEAD\n", dir) + base
	}
	missing := shellQuote(fmt.Sprintf("checkout %s: no such branch or tag in %s (or the repository cannot be read)", ref, res.URL))
	return fmt.Sprintf("git clone --depth=1 --quiet --branch %s %s %s || { echo %s >&2; exit 1; }\n", shellQuote(ref), repo, dir, missing) + base
}

// baseRef names the commit a repository resource was cloned at.
const baseRef = "refs/aod/base"

// diffScript prints the unified diff of the repository at mount against
// the commit it was cloned at: commits since, changes not committed, and
// new files (not ignored ones), through an index of its own so the
// repository's is untouched. Paths are shown under the mount path.
func diffScript(mount string) string {
	return fmt.Sprintf(`M=%[1]s
cd "$M" 2>/dev/null && [ -d .git ] || exit 0
base=$(git rev-parse -q --verify %[2]s) || base=$(git rev-list --max-parents=0 HEAD | tail -n 1) || exit 0
idx=$(mktemp) || exit 1
GIT_INDEX_FILE=$idx git read-tree "$base" && GIT_INDEX_FILE=$idx git add -A . &&
GIT_INDEX_FILE=$idx git -c core.quotePath=false diff --cached --no-color --no-ext-diff --binary --src-prefix="a$M/" --dst-prefix="b$M/" "$base"
st=$?
rm -f "$idx"
exit $st
`, shellQuote(mount), baseRef)
}
