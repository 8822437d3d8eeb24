package ui

import (
	"cmp"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// datetimeLocal is the value format of an <input type="datetime-local">.
const datetimeLocal = "2006-01-02T15:04"

type apiKeysPage struct {
	Form   *form
	NewKey string // the raw key just created, shown once
	Keys   []keyRow
	Curl   string // the create form's request as a curl command
}

type keyRow struct {
	*store.APIKey
	State string // active, expired or revoked
}

func (u *UI) handleAPIKeys(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	p := apiKeysPage{Form: newForm()}
	var extra []flash
	if r.Method == http.MethodPost {
		f := p.Form
		name := strings.TrimSpace(r.PostForm.Get("name"))
		f.Values["name"] = name
		if n := utf8.RuneCountInString(name); n > store.MaxKeyNameLen {
			f.add("name", fmt.Sprintf("Ensure this value has at most %d characters (it has %d).", store.MaxKeyNameLen, n))
		}
		var expires *time.Time
		if raw := strings.TrimSpace(r.PostForm.Get("expires_at")); raw != "" {
			f.Values["expires_at"] = raw
			t, err := parseLocalTime(raw)
			switch {
			case err != nil:
				f.add("expires_at", "Enter a valid date/time.")
			case !t.After(time.Now()):
				f.add("expires_at", "Expiry must be in the future.")
			default:
				expires = &t
			}
		}
		if f.ok() {
			_, raw, err := u.db.CreateAPIKey(r.Context(), s.User.ID, name, expires)
			if err != nil {
				return err
			}
			p.NewKey = raw
			p.Form = newForm()
			extra = append(extra, success("API key created — copy it now, it won't be shown again."))
		}
		if err := u.loadKeys(r, s, &p); err != nil {
			return err
		}
		p.Curl = u.keyCurl(r, p.Form, expires)
		// Shown with a 200, not a redirect: the raw key must never
		// travel in a cookie or URL to reach the next page.
		u.render(w, r, http.StatusOK, "api_keys", s, p, extra...)
		return nil
	}
	if err := u.loadKeys(r, s, &p); err != nil {
		return err
	}
	p.Curl = u.keyCurl(r, p.Form, nil)
	u.render(w, r, http.StatusOK, "api_keys", s, p)
	return nil
}

// keyCurl is the API request the create form stands for: POST /api-keys
// with the form's label and its expiry as seconds from now.
func (u *UI) keyCurl(r *http.Request, f *form, expires *time.Time) string {
	body := map[string]any{"name": cmp.Or(f.Values["name"], "<label>")}
	if expires != nil {
		body["expires_in"] = int64(time.Until(*expires).Seconds())
	}
	return curlCommand(http.MethodPost, u.baseURL(r)+"/api-keys", body)
}

// parseLocalTime reads a datetime-local value (with or without seconds) as
// UTC, which the form says it is.
func parseLocalTime(v string) (time.Time, error) {
	t, err := time.Parse(datetimeLocal, v)
	if err != nil {
		t, err = time.Parse(datetimeLocal+":05", v)
	}
	return t.UTC(), err
}

func (u *UI) loadKeys(r *http.Request, s *session, p *apiKeysPage) error {
	keys, err := u.db.ListAPIKeys(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, k := range keys {
		row := keyRow{APIKey: k, State: "active"}
		switch {
		case !k.Active:
			row.State = "revoked"
		case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
			row.State = "expired"
		}
		p.Keys = append(p.Keys, row)
	}
	return nil
}

func (u *UI) handleAPIKeyRevoke(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := strconv.ParseInt(ps.ByName("id"), 10, 64)
	if err != nil || id <= 0 {
		u.renderError(w, r, s, http.StatusNotFound)
		return nil
	}
	k, err := u.db.RevokeAPIKey(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	u.redirect(w, r, "/ui/api-keys", success("Revoked "+k.Prefix+"…"))
	return nil
}
