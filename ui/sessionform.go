package ui

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
)

// The start-session form of an agent's page holds every field of
// POST /sessions: prompt, timeout, an environment override, repositories,
// secret env vars and a budget. Like the other forms it checks nothing
// itself: it builds the object the API would decode, validates it with
// validate.SessionInput and creates the session with the sessions service,
// as the API does. A refused form comes back filled in, except for tokens
// and secret values, which are never written into a page.

// startRows is how many rows each repeatable group shows at least, so the
// form takes a few repositories and variables without JavaScript.
const startRows = 3

// startForm is the start-session form: the single fields in form (prompt,
// timeout, environment_id, budget_usd, with errors by field and "" for the
// whole form), the repeatable rows, and what the page shows around them.
type startForm struct {
	*form
	Repos   []*repoRow
	Secrets []*secretRow
	// Environments are the user's active environments, for the override.
	Environments []*store.Environment
	// KeyMissing is set when the session was refused for want of a model
	// key.
	KeyMissing *keyMissing
	// CurlURL is this server's POST /sessions address and Curl the form's
	// request as a curl command.
	CurlURL string
	Curl    string
}

// repoRow is one repository row. Its token is kept only for the request:
// the page says whether one was given, never what it was.
type repoRow struct {
	N                        int // position from 0, for element ids
	URL, MountPath, Checkout string
	token                    string
	Errors                   map[string][]string // by API field, "" for the row
}

// Num is the row's number as people count.
func (r *repoRow) Num() int { return r.N + 1 }

// HadToken reports whether the submitted row had a token, which must be
// entered again.
func (r *repoRow) HadToken() bool { return r.token != "" }

// Err lists the errors of one field of the row.
func (r *repoRow) Err(field string) []string { return r.Errors[field] }

func (r *repoRow) blank() bool {
	return r.URL == "" && r.MountPath == "" && r.Checkout == "" && r.token == ""
}

// secretRow is one secret env var row; like a token, its value is never
// rendered.
type secretRow struct {
	N      int
	Name   string
	value  string
	Errors []string
}

func (s *secretRow) Num() int { return s.N + 1 }

// HadValue reports whether the submitted row had a value, which must be
// entered again.
func (s *secretRow) HadValue() bool { return s.value != "" }

func (s *secretRow) blank() bool { return s.Name == "" && s.value == "" }

// keyMissing is the refusal of a session whose runtime has no model key,
// with the server's hint of where to put one.
type keyMissing struct {
	Message string
	Hint    string
	Page    string // the secrets page
}

// newStartForm is the form as a fresh page shows it.
func newStartForm() *startForm {
	f := &startForm{form: newForm()}
	f.Values["timeout"] = strconv.Itoa(validate.DefaultTimeout)
	return f
}

// readStartForm reads a submitted start form. Repository and variable rows
// come as repeated fields in page order; rows left blank are dropped.
func readStartForm(pf url.Values) *startForm {
	f := &startForm{form: newForm()}
	f.Values["prompt"] = textarea(pf.Get("prompt"))
	for _, k := range []string{"timeout", "environment_id", "budget_usd"} {
		f.Values[k] = strings.TrimSpace(pf.Get(k))
	}
	urls, mounts, checkouts, tokens := pf["repo_url"], pf["repo_mount_path"], pf["repo_checkout"], pf["repo_token"]
	for i := range max(len(urls), len(mounts), len(checkouts), len(tokens)) {
		r := &repoRow{URL: rowValue(urls, i), MountPath: rowValue(mounts, i), Checkout: rowValue(checkouts, i), token: rowValue(tokens, i)}
		if !r.blank() {
			r.N = len(f.Repos)
			f.Repos = append(f.Repos, r)
		}
	}
	names, values := pf["secret_name"], pf["secret_value"]
	for i := range max(len(names), len(values)) {
		s := &secretRow{Name: rowValue(names, i)}
		if i < len(values) {
			s.value = values[i] // a value is taken as typed
		}
		if !s.blank() {
			s.N = len(f.Secrets)
			f.Secrets = append(f.Secrets, s)
		}
	}
	return f
}

// rowValue is the trimmed i-th value of a repeated field, "" past its end.
func rowValue(vals []string, i int) string {
	if i < len(vals) {
		return strings.TrimSpace(vals[i])
	}
	return ""
}

// body is the form as the object POST /sessions takes: blank fields are
// left out, as absent keys, and numbers are the text typed (the API takes
// numeric strings). For showing (placeholders), numbers that read as
// numbers are JSON numbers, tokens and secret values are "<token>" and
// "<value>", and a blank prompt is "<prompt>".
func (f *startForm) body(agentID string, placeholders bool) map[string]any {
	body := map[string]any{"agent_id": agentID}
	if p := f.Values["prompt"]; strings.TrimSpace(p) != "" {
		body["prompt"] = p
	} else if placeholders {
		body["prompt"] = "<prompt>"
	}
	setIf(body, "timeout", f.Values["timeout"])
	setIf(body, "environment_id", f.Values["environment_id"])
	setIf(body, "budget_usd", f.Values["budget_usd"])
	if placeholders {
		if n, err := strconv.Atoi(f.Values["timeout"]); err == nil {
			body["timeout"] = n
		}
		// A float64 is written as JavaScript writes numbers, so the page's
		// script shows the same command.
		if x, err := strconv.ParseFloat(f.Values["budget_usd"], 64); err == nil && !math.IsInf(x, 0) && !math.IsNaN(x) {
			body["budget_usd"] = x
		}
	}
	var repos []any
	for _, r := range f.Repos {
		if r.blank() {
			continue
		}
		m := map[string]any{"type": "github_repository"}
		setIf(m, "url", r.URL)
		setIf(m, "mount_path", r.MountPath)
		setIf(m, "checkout", r.Checkout)
		if r.token != "" {
			m["authorization_token"] = r.token
			if placeholders {
				m["authorization_token"] = "<token>"
			}
		}
		repos = append(repos, m)
	}
	if repos != nil {
		body["resources"] = repos
	}
	vars := map[string]any{}
	for _, s := range f.Secrets {
		if s.blank() {
			continue
		}
		vars[s.Name] = s.value
		if placeholders {
			vars[s.Name] = "<value>"
		}
	}
	if len(vars) > 0 {
		body["secret_env_vars"] = vars
	}
	return body
}

// repoLabels name a repository's fields in messages.
var repoLabels = map[string]string{"url": "URL", "mount_path": "mount path", "checkout": "checkout", "authorization_token": "token"}

// startLabels name the single fields in messages.
var startLabels = map[string]string{"prompt": "Prompt", "timeout": "Timeout", "environment_id": "Environment", "budget_usd": "Budget"}

// applyError puts a refused start onto the form and returns the page's
// messages: one per problem as "<Field>: <why>", or the API's message
// for a refusal that is about no one field.
func (f *startForm) applyError(err error) []flash {
	e := store.AsError(err)
	if len(e.Fields) == 0 {
		switch {
		case e.Code == store.BadRequest && strings.HasPrefix(e.Message, "No API key configured"):
			hint, _ := e.Extra["hint"].(string)
			f.KeyMissing = &keyMissing{Message: e.Message, Hint: hint, Page: store.SecretsPage}
		case strings.Contains(strings.ToLower(e.Message), "environment"):
			// Unknown or archived: the override's, or the agent's own.
			f.add("environment_id", e.Message)
		}
		return []flash{failure(e.Message)}
	}
	var out []flash
	for _, fe := range e.Fields {
		label, msg := f.placeError(fe)
		out = append(out, failure(label+": "+msg))
	}
	return out
}

// placeError files one validation problem under the input it is about and
// returns that input's label and the message.
func (f *startForm) placeError(fe store.FieldError) (label, msg string) {
	var key string
	if len(fe.Loc) > 0 {
		key = fmt.Sprint(fe.Loc[0])
	}
	one := fe
	one.Loc = nil // the message is shown beside its input: no path before it
	msg = fieldMessage(one)
	switch key {
	case "prompt", "timeout", "environment_id", "budget_usd":
		f.add(key, msg)
		return startLabels[key], msg
	case "resources":
		if len(fe.Loc) > 1 {
			if i, ok := fe.Loc[1].(int); ok && i >= 0 && i < len(f.Repos) {
				r, name := f.Repos[i], ""
				if len(fe.Loc) > 2 {
					name = fmt.Sprint(fe.Loc[2])
				}
				if r.Errors == nil {
					r.Errors = map[string][]string{}
				}
				r.Errors[name] = append(r.Errors[name], msg)
				return strings.TrimSpace(fmt.Sprintf("Repository %d %s", r.Num(), repoLabels[name])), msg
			}
		}
		f.add("resources", msg)
		return "Repositories", msg
	case "secret_env_vars":
		// The API names the variable a problem is about, never its value.
		if name, ok := fe.Input.(string); ok {
			for _, s := range f.Secrets {
				if s.Name == name {
					s.Errors = append(s.Errors, msg)
					return "Secret env vars", msg
				}
			}
		}
		f.add("secret_env_vars", msg)
		return "Secret env vars", msg
	}
	f.add("", msg)
	return "Session", msg
}

// Open reports whether the optional groups (repositories, secrets,
// budget) start unfolded: when the form has anything in them, or a
// problem they can fix.
func (f *startForm) Open() bool {
	for _, r := range f.Repos {
		if !r.blank() || len(r.Errors) > 0 {
			return true
		}
	}
	for _, s := range f.Secrets {
		if !s.blank() || len(s.Errors) > 0 {
			return true
		}
	}
	if f.Values["budget_usd"] != "" || f.KeyMissing != nil {
		return true
	}
	return len(f.Err("resources")) > 0 || len(f.Err("secret_env_vars")) > 0 || len(f.Err("budget_usd")) > 0
}

// prepareStartForm readies the form for its page: the environments to choose from,
// blank rows to fill in, and the curl command of what it holds.
func (u *UI) prepareStartForm(r *http.Request, userID, agentID string, f *startForm) error {
	envs, err := u.db.ListEnvironments(r.Context(), userID, false)
	if err != nil {
		return err
	}
	f.Environments = envs
	f.CurlURL = u.baseURL(r) + "/sessions"
	f.Curl = curlCommand(http.MethodPost, f.CurlURL, f.body(agentID, true))
	for n := max(startRows, len(f.Repos)+1); len(f.Repos) < n; {
		f.Repos = append(f.Repos, &repoRow{N: len(f.Repos)})
	}
	for n := max(startRows, len(f.Secrets)+1); len(f.Secrets) < n; {
		f.Secrets = append(f.Secrets, &secretRow{N: len(f.Secrets)})
	}
	return nil
}

// startSession validates a submitted form as POST /sessions validates its
// body and creates the session through the same use case.
func (u *UI) startSession(ctx context.Context, userID, agentID string, f *startForm) (*store.Session, error) {
	in, err := validate.SessionInput(validate.FromMap(f.body(agentID, false)))
	if err != nil {
		return nil, err
	}
	return u.sess.Create(ctx, userID, in)
}
