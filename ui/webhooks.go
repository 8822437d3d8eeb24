package ui

import (
	"cmp"
	"net/http"
	"slices"
	"strings"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// The Webhooks pages: a user's endpoints with a form to add one (its
// signing secret shown once), and a page per webhook listing its recent
// deliveries, each of which can be sent again. The rules are the API's
// (validate.WebhookInput and validate.WebhookTarget); the store keeps
// every webhook to its owner.

type webhooksPage struct {
	Form     *form
	Events   []eventChoice  // the form's checkboxes
	Created  *store.Webhook // the webhook just created, whose Secret is shown once
	Webhooks []webhookRow
	Curl     string // the create form's request as a curl command
}

type webhookRow struct {
	*store.Webhook
	AllEvents bool // subscribed to every event type
}

// eventChoice is one event type's checkbox.
type eventChoice struct {
	Name    string
	About   string
	Checked bool
}

// eventAbout says in a few words when each event is sent.
var eventAbout = map[string]string{
	store.EventSessionRunning:       "a turn started",
	store.EventSessionCompleted:     "a turn finished",
	store.EventSessionFailed:        "a turn failed",
	store.EventSessionTerminated:    "the session was terminated",
	store.EventSessionBudgetReached: "the session spent its budget",
}

// eventChoices lists every event type, ticked when it is in checked.
func eventChoices(checked []string) []eventChoice {
	out := make([]eventChoice, len(store.WebhookEvents))
	for i, e := range store.WebhookEvents {
		out[i] = eventChoice{Name: e, About: eventAbout[e], Checked: slices.Contains(checked, e)}
	}
	return out
}

// handleWebhooks lists the user's webhooks (GET) and creates one (POST).
func (u *UI) handleWebhooks(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	p := webhooksPage{Form: newForm(), Events: eventChoices(store.WebhookEvents)}
	var extra []flash
	if r.Method == http.MethodPost {
		created, err := u.createWebhook(r, s, &p)
		if err != nil {
			return err
		}
		if created != nil {
			p.Created = created
			p.Form, p.Events = newForm(), eventChoices(store.WebhookEvents)
			extra = append(extra, success("Webhook created — copy its secret now, it won't be shown again."))
		}
	}
	if err := u.loadWebhooks(r, s, &p); err != nil {
		return err
	}
	p.Curl = u.webhookCurl(r, &p)
	// A 200, not a redirect, after a create: the secret must never travel
	// in a cookie or URL to reach the next page.
	u.render(w, r, http.StatusOK, "webhooks", s, p, extra...)
	return nil
}

// createWebhook validates the form as the API validates its body and
// creates the webhook. A refused form leaves its errors on p.Form and
// returns no webhook; only an internal failure is an error.
func (u *UI) createWebhook(r *http.Request, s *session, p *webhooksPage) (*store.Webhook, error) {
	f := p.Form
	f.Values["url"] = strings.TrimSpace(r.PostForm.Get("url"))
	f.Values["description"] = strings.TrimSpace(r.PostForm.Get("description"))
	events := r.PostForm["events"]
	p.Events = eventChoices(events)
	body := map[string]any{}
	setIf(body, "url", f.Values["url"])
	setIf(body, "description", f.Values["description"])
	list := make([]any, len(events))
	for i, e := range events {
		list[i] = e
	}
	body["events"] = list
	// The API takes no events as every event; a form with every box
	// cleared means something else, so it is asked again.
	if len(events) == 0 {
		f.add("events", "Choose at least one event.")
	}
	in, err := validate.WebhookInput(validate.FromMap(body))
	if err == nil {
		err = validate.WebhookTarget(in.URL, u.cfg.EgressAllow)
	}
	if err == nil && f.ok() {
		var hook *store.Webhook
		if hook, err = u.db.CreateWebhook(r.Context(), s.User.ID, in.URL, in.Events, in.Description); err == nil {
			return hook, nil
		}
	}
	if err == nil {
		return nil, nil
	}
	// A refused target is about the URL; the per-user limit (a conflict)
	// is about the whole form.
	field := "url"
	if store.ErrorCode(err) == store.Conflict {
		field = ""
	}
	return nil, f.applyError(err, field)
}

func (u *UI) loadWebhooks(r *http.Request, s *session, p *webhooksPage) error {
	hooks, err := u.db.ListWebhooks(r.Context(), s.User.ID)
	if err != nil {
		return err
	}
	for _, h := range hooks {
		all := true
		for _, e := range store.WebhookEvents {
			all = all && slices.Contains(h.Events, e)
		}
		p.Webhooks = append(p.Webhooks, webhookRow{Webhook: h, AllEvents: all})
	}
	return nil
}

type webhookPage struct {
	Webhook    *store.Webhook
	Deliveries []*store.Delivery // newest first
}

// handleWebhook is one webhook's page: what it is and its recent
// deliveries. Another user's webhook is a 404.
func (u *UI) handleWebhook(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	hook, err := u.db.GetWebhook(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	list, err := u.db.ListDeliveries(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "webhook_detail", s, webhookPage{Webhook: hook, Deliveries: list})
	return nil
}

func (u *UI) handleWebhookDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	if err := u.db.DeleteWebhook(r.Context(), s.User.ID, id); err != nil {
		return err
	}
	u.redirect(w, r, "/ui/webhooks", success("Webhook deleted."))
	return nil
}

func (u *UI) handleWebhookRedeliver(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	did, err := validate.ID(ps.ByName("delivery_id"), "Delivery")
	if err != nil {
		return err
	}
	if err := u.db.Redeliver(r.Context(), s.User.ID, id, did); err != nil {
		return err
	}
	u.redirect(w, r, "/ui/webhooks/"+id, success("Delivery queued: it is sent again now."))
	return nil
}

// webhookCurl is the API request the create form stands for: POST
// /webhooks with the form's URL, ticked events and description.
func (u *UI) webhookCurl(r *http.Request, p *webhooksPage) string {
	body := map[string]any{"url": cmp.Or(p.Form.Values["url"], "<url>")}
	var events []string
	for _, e := range p.Events {
		if e.Checked {
			events = append(events, e.Name)
		}
	}
	if len(events) < len(store.WebhookEvents) {
		body["events"] = events // every event is the default
	}
	if d := p.Form.Values["description"]; d != "" {
		body["description"] = d
	}
	return curlCommand(http.MethodPost, u.baseURL(r)+"/webhooks", body)
}
