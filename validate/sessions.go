package validate

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
)

// Bounds of a turn's timeout in seconds, and of a session's repositories.
const (
	minTimeout     = 10
	maxTimeout     = 3600
	DefaultTimeout = 600
	// MaxBudgetUSD bounds a session's budget_usd (which must be above 0).
	MaxBudgetUSD = 1_000_000
	maxResources = 10
	// MaxMountPathLen bounds mount_path: far beyond any real checkout path,
	// well below what the kernel refuses (PATH_MAX 4096).
	MaxMountPathLen = 1024
	// MaxCheckoutLen bounds checkout: a branch, tag or commit name (git
	// sets no limit; real ones are far shorter, and a ref is a file name
	// on most servers, 255 bytes at most per path component).
	MaxCheckoutLen = 255
)

var githubURLRE = regexp.MustCompile(`^https://github\.com/[\w.-]+/[\w.-]+(\.git)?$`)

// decodePromptFields reads prompt (required, non-empty) and timeout
// (10..3600, default 600), shared by create and prompt.
func decodePromptFields(o *Object) (string, int) {
	prompt := o.str("prompt", 0)
	if s, ok := o.m["prompt"].(string); ok && s == "" {
		o.add("string_too_short", []any{"prompt"}, "String should have at least 1 character", s, map[string]any{"min_length": 1})
	}
	timeout, ok := o.integer("timeout", false, minTimeout, maxTimeout)
	if !ok {
		timeout = DefaultTimeout
	}
	return prompt, int(timeout)
}

// decodeResources validates github_repository resources: the URL form
// (".git" stripped), absolute unique mount paths that are not the sprite's
// root, default mount /workspace/<repo>, and an optional checkout (a
// branch, tag or commit).
func decodeResources(o *Object) []store.Resource {
	items, ok := o.list("resources")
	if !ok {
		return nil
	}
	var out []store.Resource
	valid := true
	seen := map[string]bool{}
	for i, it := range items {
		loc := func(field string) []any { return []any{"resources", i, field} }
		m, ok := it.(map[string]any)
		if !ok {
			o.add("model_type", []any{"resources", i}, "Input should be a valid dictionary or instance of GitHubRepoResource", it, nil)
			valid = false
			continue
		}
		if t, present := m["type"]; !present {
			o.add("missing", loc("type"), "Field required", redactToken(m), nil)
			valid = false
		} else if t != "github_repository" {
			o.add("literal_error", loc("type"), "Input should be 'github_repository'", t, nil)
			valid = false
		}
		r := store.Resource{Type: "github_repository"}
		switch u := m["url"].(type) {
		case nil:
			o.add("missing", loc("url"), "Field required", redactToken(m), nil)
			valid = false
		case string:
			if !githubURLRE.MatchString(u) {
				o.valueError(loc("url"), u, "Must be a valid https://github.com/<owner>/<repo> URL")
				valid = false
			}
			r.URL = strings.TrimSuffix(u, ".git")
		default:
			o.add("string_type", loc("url"), "Input should be a valid string", u, nil)
			valid = false
		}
		switch mp := m["mount_path"].(type) {
		case nil:
			r.MountPath = "/workspace/" + path.Base(r.URL)
		case string:
			if problem := mountPathProblem(mp); problem != "" {
				o.valueError(loc("mount_path"), boundedInput(mp, MaxMountPathLen), "%s", problem)
				valid = false
			}
			r.MountPath = path.Clean(mp)
		default:
			o.add("string_type", loc("mount_path"), "Input should be a valid string", mp, nil)
			valid = false
		}
		switch ref := m["checkout"].(type) {
		case nil:
		case string:
			if problem := checkoutProblem(ref); problem != "" {
				o.valueError(loc("checkout"), boundedInput(ref, MaxCheckoutLen), "%s", problem)
				valid = false
			}
			r.Checkout = ref
		default:
			o.add("string_type", loc("checkout"), "Input should be a valid string", ref, nil)
			valid = false
		}
		switch tok := m["authorization_token"].(type) {
		case nil:
		case string:
			r.Token = tok
		default:
			o.add("string_type", loc("authorization_token"), "Input should be a valid string", Redacted, nil)
			valid = false
		}
		if valid && seen[r.MountPath] {
			o.valueError([]any{"resources"}, r.MountPath, "Duplicate mount_path in resources")
			valid = false
		}
		seen[r.MountPath] = true
		out = append(out, r)
	}
	if len(items) > maxResources {
		o.valueError([]any{"resources"}, len(items), "Maximum %d resources per session", maxResources)
		valid = false
	}
	if !valid {
		return nil
	}
	return out
}

// redactToken hides a resource's token in a 422's input.
func redactToken(m map[string]any) map[string]any {
	if _, ok := m["authorization_token"]; !ok {
		return m
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	c["authorization_token"] = Redacted
	return c
}

// reservedMounts are sprite paths a repository can never be checked out at:
// the system directories the sandbox builds its root from, the kernel's
// filesystems, and where aod mounts the agent CLIs. A checkout there could
// only fail at provisioning (or shadow the system), so it is refused now.
var reservedMounts = []string{"/aod", "/bin", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/proc", "/sbin", "/sys", "/usr"}

// mountPathProblem says why mp cannot be a mount_path, "" when it can. The
// first two messages are the original's.
func mountPathProblem(mp string) string {
	if !strings.HasPrefix(mp, "/") {
		return "mount_path must be an absolute path"
	}
	if n := len([]rune(mp)); n > MaxMountPathLen {
		return fmt.Sprintf("mount_path must be at most %d characters", MaxMountPathLen)
	}
	if hasControl(mp) {
		return "mount_path must not contain control characters"
	}
	clean := path.Clean(mp)
	switch clean {
	case "/", "/home/sprite":
		return "mount_path must not be the Sprite root"
	case "/tmp":
		return "mount_path must not be the Sprite's /tmp (it holds aod's own files); use a directory under it"
	}
	for _, d := range reservedMounts {
		if clean == d || strings.HasPrefix(clean, d+"/") {
			return fmt.Sprintf("mount_path must not be under %s (a system directory of the Sprite)", d)
		}
	}
	return ""
}

// checkoutProblem says why ref cannot be a checkout, "" when it can. A
// checkout is passed to git as a branch, tag or commit name, so it follows
// git's rules for ref names (git check-ref-format) and can never be taken
// for an option.
func checkoutProblem(ref string) string {
	switch {
	case ref == "":
		return "checkout must not be empty"
	case utf8.RuneCountInString(ref) > MaxCheckoutLen:
		return fmt.Sprintf("checkout must be at most %d characters", MaxCheckoutLen)
	case hasControl(ref):
		return "checkout must not contain control characters"
	case strings.HasPrefix(ref, "-"):
		return "checkout must not start with '-'"
	case strings.ContainsAny(ref, " ~^:?*[\\"):
		return "checkout must not contain spaces or any of ~ ^ : ? * [ \\"
	case strings.Contains(ref, "..") || strings.Contains(ref, "@{") || ref == "@":
		return "checkout must not contain '..' or '@{', nor be '@'"
	case strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") || strings.Contains(ref, "//"):
		return "checkout must not start or end with '/', nor contain '//'"
	case strings.HasSuffix(ref, "."):
		return "checkout must not end with '.'"
	}
	for _, part := range strings.Split(ref, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return "checkout must not have a part that starts with '.' or ends with '.lock'"
		}
	}
	return ""
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0
}

// boundedInput is what a 422 echoes of a refused string bounded to max
// characters: the string, cut short when it is longer, so an error body
// stays bounded by the rule.
func boundedInput(s string, max int) string {
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

// SessionInput validates a session create: the schema first, then the ids'
// form (404 for one that is not a UUID). The policy is the service's.
func SessionInput(o *Object) (store.SessionInput, error) {
	agentRaw := o.str("agent_id", 0)
	prompt, timeout := decodePromptFields(o)
	envRaw := o.optStr("environment_id", 0)
	resources := decodeResources(o)
	secrets := decodeEnvVars(o, "secret_env_vars")
	var budget *float64
	if b, ok := o.number("budget_usd", 0, MaxBudgetUSD); ok {
		budget = &b
	}
	if err := o.Err(); err != nil {
		return store.SessionInput{}, err
	}
	agentID, err := ID(agentRaw, "Agent")
	if err != nil {
		return store.SessionInput{}, err
	}
	var env string
	if envRaw != nil && *envRaw != "" {
		if env, err = ID(*envRaw, "Environment"); err != nil {
			return store.SessionInput{}, err
		}
	}
	return store.SessionInput{AgentID: agentID, EnvironmentID: env, Prompt: prompt, Timeout: timeout,
		Resources: resources, SecretEnvVars: secrets, BudgetUSD: budget}, nil
}

// Prompt validates a follow-up: prompt (required, non-empty) and timeout.
func Prompt(o *Object) (prompt string, timeout int, err error) {
	prompt, timeout = decodePromptFields(o)
	return prompt, timeout, o.Err()
}

// Bounds of an API key created over HTTP: its lifetime in seconds.
const (
	minKeyLifetime = 60
	maxKeyLifetime = 10 * 365 * 24 * 3600
)

// APIKeyInput validates POST /api-keys: name (required, at most
// store.MaxKeyNameLen characters) and expires_in (optional seconds; 0:
// never expires).
func APIKeyInput(o *Object) (name string, expiresIn int64, err error) {
	name = o.str("name", store.MaxKeyNameLen)
	expiresIn, _ = o.integer("expires_in", false, minKeyLifetime, maxKeyLifetime)
	return name, expiresIn, o.Err()
}

// AdminAPIKey is a validated POST /admin/api-keys.
type AdminAPIKey struct {
	User      string // the username; the user is created if new
	Name      string
	ExpiresIn int64
}

// AdminAPIKeyInput validates POST /admin/api-keys: user (required, a valid
// username), then name and expires_in as for POST /api-keys (the name is
// optional here: the dashboard's own label for the person's key).
func AdminAPIKeyInput(o *Object) (AdminAPIKey, error) {
	in := AdminAPIKey{User: o.str("user", store.MaxUsernameLen)}
	if in.User != "" && !store.ValidUsername(in.User) {
		o.valueError([]any{"user"}, in.User, "use 1-%d letters, digits and @.+-_", store.MaxUsernameLen)
	}
	if n := o.optStr("name", store.MaxKeyNameLen); n != nil {
		in.Name = *n
	}
	in.ExpiresIn, _ = o.integer("expires_in", false, minKeyLifetime, maxKeyLifetime)
	return in, o.Err()
}

// Webhook is a validated POST /webhooks.
type Webhook struct {
	URL         string
	Events      []string
	Description string
}

// Bounds of a webhook's fields.
const (
	maxWebhookURL         = 2048
	maxWebhookDescription = 500
)

// WebhookInput validates POST /webhooks: url (required, http or https with a
// host), events (optional, known event types; default all) and
// description (optional).
func WebhookInput(o *Object) (Webhook, error) {
	in := Webhook{URL: o.str("url", maxWebhookURL)}
	if d := o.optStr("description", maxWebhookDescription); d != nil {
		in.Description = *d
	}
	if list, ok := o.list("events"); ok {
		for i, v := range list {
			s, isStr := v.(string)
			if !isStr || !store.ValidWebhookEvent(s) {
				o.valueError([]any{"events", i}, v, "event must be one of: %s", strings.Join(store.WebhookEvents, ", "))
				continue
			}
			in.Events = append(in.Events, s)
		}
	}
	if in.URL != "" {
		u, err := url.Parse(in.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			o.valueError([]any{"url"}, in.URL, "url must be an http or https URL with a host and no credentials")
		}
	}
	return in, o.Err()
}
