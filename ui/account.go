package ui

import (
	"net/http"
	"strings"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// form is a submitted form's values and its errors by field ("" for errors
// about the whole form), for re-rendering.
type form struct {
	Values map[string]string
	Errors map[string][]string
}

func newForm() *form { return &form{Values: map[string]string{}, Errors: map[string][]string{}} }

func (f *form) add(field, msg string) { f.Errors[field] = append(f.Errors[field], msg) }
func (f *form) ok() bool              { return len(f.Errors) == 0 }

// Get is the template's way to read a value.
func (f *form) Get(field string) string { return f.Values[field] }

// Err lists the errors of one field.
func (f *form) Err(field string) []string { return f.Errors[field] }

const fieldRequired = "This field is required."

// require copies a trimmed field into the form, noting when it's empty.
func (f *form) require(r *http.Request, field string) string {
	v := strings.TrimSpace(r.PostForm.Get(field))
	f.Values[field] = v
	if v == "" {
		f.add(field, fieldRequired)
	}
	return v
}

type landingPage struct{ Runtimes []string }

func (u *UI) handleLanding(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	if r.URL.Path != "/" {
		u.renderError(w, r, s, http.StatusNotFound)
		return nil
	}
	u.render(w, r, http.StatusOK, "landing", s, landingPage{Runtimes: catalogue.AgentRuntimes()})
	return nil
}

type loginPage struct {
	Form *form
	Next string
}

func (u *UI) handleLogin(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	if r.Method == http.MethodGet {
		next := safeNext(r.URL.Query().Get("next"))
		if s != nil {
			http.Redirect(w, r, orDefault(next, "/ui/"), http.StatusFound)
			return nil
		}
		u.render(w, r, http.StatusOK, "login", nil, loginPage{Form: newForm(), Next: next})
		return nil
	}
	f := newForm()
	next := safeNext(r.PostForm.Get("next"))
	username := f.require(r, "username")
	password := r.PostForm.Get("password")
	if password == "" {
		f.add("password", fieldRequired)
	}
	if !f.ok() {
		u.render(w, r, http.StatusOK, "login", nil, loginPage{Form: f, Next: next})
		return nil
	}
	ipKey, userKey := "ip:"+u.clientIP(r), "user:"+strings.ToLower(username)
	if u.limiter.blocked(ipKey, userKey) {
		f.add("", tooManyAttempts)
		u.render(w, r, http.StatusTooManyRequests, "login", nil, loginPage{Form: f, Next: next})
		return nil
	}
	user, err := u.db.CheckPassword(r.Context(), username, password)
	if store.ErrorCode(err) == store.Unauthorized {
		u.limiter.fail(ipKey, userKey)
		f.add("", store.ErrorMessage(err)+" Note that both fields may be case-sensitive.")
		u.render(w, r, http.StatusOK, "login", nil, loginPage{Form: f, Next: next})
		return nil
	}
	if err != nil {
		return err
	}
	u.limiter.reset(userKey)
	if _, err := u.login(w, r, user.ID); err != nil {
		return err
	}
	http.Redirect(w, r, orDefault(next, "/ui/"), http.StatusFound)
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (u *UI) handleLogout(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	if s != nil {
		if err := u.db.DeleteUISession(r.Context(), s.token); err != nil {
			return err
		}
	}
	u.setCookie(w, r, sessionCookie, "", -1)
	u.redirect(w, r, "/ui/login", success("You have been logged out."))
	return nil
}

type registerPage struct {
	Form   *form
	Closed bool
}

func (u *UI) handleRegister(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	closed := u.cfg.Registration == RegistrationClosed
	if s != nil {
		http.Redirect(w, r, "/ui/", http.StatusFound)
		return nil
	}
	if closed {
		status := http.StatusOK
		if r.Method != http.MethodGet {
			status = http.StatusForbidden
		}
		u.render(w, r, status, "register", s, registerPage{Form: newForm(), Closed: true})
		return nil
	}
	if r.Method == http.MethodGet {
		u.render(w, r, http.StatusOK, "register", nil, registerPage{Form: newForm()})
		return nil
	}
	f := newForm()
	username := f.require(r, "username")
	p1, p2 := r.PostForm.Get("password1"), r.PostForm.Get("password2")
	if p1 == "" {
		f.add("password1", fieldRequired)
	}
	if p2 == "" {
		f.add("password2", fieldRequired)
	}
	if p1 != "" && p2 != "" && p1 != p2 {
		f.add("password2", "The two password fields didn’t match.")
	}
	if !f.ok() {
		u.render(w, r, http.StatusOK, "register", s, registerPage{Form: f})
		return nil
	}
	signupKey := "signup:" + u.clientIP(r)
	if u.signups.blocked(signupKey) {
		f.add("", tooManySignups)
		u.render(w, r, http.StatusTooManyRequests, "register", s, registerPage{Form: f})
		return nil
	}
	user, err := u.db.RegisterUser(r.Context(), username, p1)
	switch store.ErrorCode(err) {
	case store.Conflict:
		f.add("username", store.ErrorMessage(err))
	case store.Invalid:
		field := "password2"
		if !store.ValidUsername(username) {
			field = "username"
		}
		f.add(field, store.ErrorMessage(err))
	}
	if !f.ok() {
		u.render(w, r, http.StatusOK, "register", s, registerPage{Form: f})
		return nil
	}
	if err != nil {
		return err
	}
	u.signups.fail(signupKey) // counted: a client makes only so many accounts
	_, raw, err := u.db.CreateAPIKey(r.Context(), user.ID, "Onboarding key", nil)
	if err != nil {
		return err
	}
	login, err := u.login(w, r, user.ID)
	if err != nil {
		return err
	}
	if err := u.db.StashWelcomeKey(r.Context(), login.token, raw); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/welcome", http.StatusFound)
	return nil
}

type welcomePage struct {
	Key     string
	BaseURL string
}

// baseURL is the absolute address people reach this server at, as the
// request names it.
func (u *UI) baseURL(r *http.Request) string {
	scheme := "http"
	if u.secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (u *UI) handleWelcome(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	key, err := u.db.PopWelcomeKey(r.Context(), s.token)
	if err != nil {
		return err
	}
	if key == "" {
		http.Redirect(w, r, "/ui/", http.StatusFound)
		return nil
	}
	u.render(w, r, http.StatusOK, "welcome", s, welcomePage{Key: key, BaseURL: u.baseURL(r)})
	return nil
}

type dashboardPage struct {
	Counts      store.Counts
	Sandbox     string                  // where sessions run (see Config.Sandbox)
	Running     []*store.SessionSummary // pending and running, newest first
	MoreRunning bool                    // more are running than shown
	Recent      []*store.SessionSummary // ended, most recently first
	Spend       spendPanel              // the last days' spend
	LiveURL     string                  // where the running panel's script asks how they stand
}

func (u *UI) handleDashboard(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	c, err := u.db.DashboardCounts(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	p := dashboardPage{Counts: c, Sandbox: u.cfg.Sandbox}
	if err := u.dashboardSessions(r, s, &p); err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "dashboard", s, p)
	return nil
}
