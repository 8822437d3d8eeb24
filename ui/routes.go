package ui

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/julienschmidt/httprouter"
)

// routes is the page table of api.md §6. httprouter cannot hold
// /ui/agents/new beside /ui/agents/:id, so the :id handlers resolve "new".
func (u *UI) routes() *httprouter.Router {
	r := httprouter.New()
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.HandleOPTIONS = false
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u.renderError(w, req, u.session(req), http.StatusMethodNotAllowed)
	})
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u.renderError(w, req, u.session(req), http.StatusNotFound)
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		u.log.Error("ui: panic", "path", req.URL.Path, "panic", v)
		http.Error(w, "Internal server error", http.StatusInternalServerError)
	}

	r.GET("/static/:name", u.serveStatic)
	r.GET("/", u.public(u.handleLanding))
	r.GET("/ui", func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) {
		http.Redirect(w, req, "/ui/", http.StatusFound)
	})

	r.GET("/ui/login", u.public(u.handleLogin))
	r.POST("/ui/login", u.public(u.handleLogin))
	r.POST("/ui/logout", u.public(u.handleLogout))
	r.GET("/ui/register", u.public(u.handleRegister))
	r.POST("/ui/register", u.public(u.handleRegister))
	r.GET("/ui/welcome", u.authed(u.handleWelcome))
	r.GET("/ui/docs", u.public(u.handleDocs))

	r.GET("/ui/", u.authed(u.handleDashboard))
	r.GET("/ui/api-keys", u.authed(u.handleAPIKeys))
	r.POST("/ui/api-keys", u.authed(u.handleAPIKeys))
	r.POST("/ui/api-keys/:id/revoke", u.authed(u.handleAPIKeyRevoke))
	r.GET("/ui/webhooks", u.authed(u.handleWebhooks))
	r.POST("/ui/webhooks", u.authed(u.handleWebhooks))
	r.GET("/ui/webhooks/:id", u.authed(u.handleWebhook))
	r.POST("/ui/webhooks/:id/delete", u.authed(u.handleWebhookDelete))
	r.POST("/ui/webhooks/:id/deliveries/:delivery_id/redeliver", u.authed(u.handleWebhookRedeliver))
	r.GET("/ui/settings/secrets", u.authed(u.handleSecrets))
	r.POST("/ui/settings/secrets", u.authed(u.handleSecrets))
	r.POST("/ui/settings/secrets/:name/delete", u.authed(u.handleSecretDelete))

	r.GET("/ui/agents", u.authed(u.handleAgents))
	r.GET("/ui/agents/:id", u.authed(u.handleAgent))
	r.POST("/ui/agents/:id", u.authed(u.newOnly(u.handleAgent)))
	r.POST("/ui/agents/:id/archive", u.authed(u.handleAgentArchive))
	r.GET("/ui/agents/:id/edit", u.authed(u.handleAgentEdit))
	r.POST("/ui/agents/:id/edit", u.authed(u.handleAgentEdit))
	r.GET("/ui/agents/:id/versions", u.authed(u.handleAgentVersions))
	r.GET("/ui/agents/:id/versions/:n", u.authed(u.handleAgentVersion))
	r.POST("/ui/agents/:id/sessions", u.authed(u.handleAgentStartSession))

	r.GET("/ui/environments", u.authed(u.handleEnvironments))
	r.GET("/ui/environments/:id", u.authed(u.handleEnvironment))
	r.POST("/ui/environments/:id", u.authed(u.newOnly(u.handleEnvironment)))
	r.POST("/ui/environments/:id/archive", u.authed(u.handleEnvironmentArchive))
	r.GET("/ui/environments/:id/edit", u.authed(u.handleEnvironmentEdit))
	r.POST("/ui/environments/:id/edit", u.authed(u.handleEnvironmentEdit))
	r.GET("/ui/environments/:id/versions", u.authed(u.handleEnvironmentVersions))
	r.GET("/ui/environments/:id/versions/:n", u.authed(u.handleEnvironmentVersion))

	r.GET("/ui/sessions", u.authed(u.handleSessions))
	r.GET("/ui/session-states", u.authed(u.handleSessionStates))
	r.GET("/ui/sessions/:id", u.authed(u.handleSession))
	r.POST("/ui/sessions/:id/prompt", u.authed(u.handleSessionPrompt))
	r.POST("/ui/sessions/:id/interrupt", u.authed(u.handleSessionInterrupt))
	r.POST("/ui/sessions/:id/terminate", u.authed(u.handleSessionTerminate))
	r.GET("/ui/sessions/:id/stream", u.authed(u.handleSessionStream))
	r.GET("/ui/sessions/:id/state", u.authed(u.handleSessionState))
	r.GET("/ui/sessions/:id/files", u.authed(u.handleSessionFiles))
	r.GET("/ui/sessions/:id/files/content", u.authed(u.handleSessionFileContent))
	r.GET("/ui/sessions/:id/archive", u.authed(u.handleSessionArchive))
	r.GET("/ui/sessions/:id/diff", u.authed(u.handleSessionDiff))
	return r
}

// newOnly lets a POST through only to the "new" form; a detail page takes
// GET alone.
func (u *UI) newOnly(h authedHandle) authedHandle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
		if ps.ByName("id") != "new" {
			w.Header().Set("Allow", "GET, HEAD")
			u.renderError(w, r, s, http.StatusMethodNotAllowed)
			return nil
		}
		return h(w, r, ps, s)
	}
}

// loginURL is where an anonymous request for target is sent.
func loginURL(r *http.Request) string {
	if r.Method != http.MethodGet {
		return "/ui/login"
	}
	target := r.URL.Path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	return "/ui/login?next=" + url.QueryEscape(target)
}

// safeNext returns next when it is a path on this site, else "". It
// becomes a Location header, so no control byte may pass (a NUL before
// "//evil.example" would otherwise reach the header raw).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return ""
	}
	for _, r := range next {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return next
}
