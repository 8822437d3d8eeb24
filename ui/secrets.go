package ui

import (
	"net/http"
	"strings"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// The Settings → Secrets page: a user's secrets by name with when each
// was last set, a form to add one or replace its value, and delete. Every
// session of the user gets them as env vars. The rules are the API's
// (validate.SecretInput); a value is never written into a page, not even
// back into the form after a refusal.

type secretsPage struct {
	Form    *form
	Secrets []store.Secret
	Max     int    // the per-user limit
	Curl    string // the add form's request as a curl command, a placeholder for the value
}

// handleSecrets lists the user's secrets (GET) and adds or replaces one
// (POST, then back to the list; a refused form is shown again, without
// its value).
func (u *UI) handleSecrets(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	p := secretsPage{Form: newForm(), Max: store.MaxSecretsPerUser}
	if r.Method == http.MethodPost {
		name := strings.TrimSpace(r.PostForm.Get("name"))
		p.Form.Values["name"] = name
		body := map[string]any{}
		// Spaces around a pasted key are never part of it.
		if v := strings.TrimSpace(r.PostForm.Get("value")); v != "" {
			body["value"] = v
		}
		in, err := validate.SecretInput(name, validate.FromMap(body))
		if err == nil {
			var created bool
			if _, created, err = u.db.PutSecret(r.Context(), s.User.ID, in.Name, in.Value); err == nil {
				msg := "Secret " + in.Name + " replaced: sessions get the new value from their next turn."
				if created {
					msg = "Secret " + in.Name + " added: your sessions get it as an env var."
				}
				u.redirect(w, r, store.SecretsPage, success(msg))
				return nil
			}
		}
		if err := p.Form.applyError(err, ""); err != nil {
			return err
		}
	}
	list, err := u.db.ListSecrets(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	p.Secrets = list
	name := p.Form.Values["name"]
	if !validate.EnvVarName(name) || len(name) > validate.MaxSecretNameLen {
		name = "NAME"
	}
	p.Curl = curlCommand(http.MethodPut, u.baseURL(r)+"/secrets/"+name, map[string]any{"value": "<value of " + name + ">"})
	u.render(w, r, http.StatusOK, "settings_secrets", s, p)
	return nil
}

// handleSecretDelete deletes one of the user's secrets; a name the user
// has no secret of is a 404.
func (u *UI) handleSecretDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	name := ps.ByName("name")
	if err := u.db.DeleteSecret(r.Context(), s.User.ID, name); err != nil {
		return err
	}
	u.redirect(w, r, store.SecretsPage, success("Secret "+name+" deleted."))
	return nil
}
