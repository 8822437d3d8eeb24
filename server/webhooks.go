package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aod/aod/internal/metrics"
	"github.com/aod/aod/runner/egress"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// Webhooks tell a user's endpoints of their sessions' state changes
// (Standard Webhooks signing). Deliveries are stored in the transaction of
// the change and sent by the Dispatcher, retried with backoff across
// restarts. Targets obey sprites' egress rule: no loopback, link-local or
// private address unless --egress-allow names it.

type webhookJSON struct {
	ID          string   `json:"id"`
	Type        string   `json:"type"`
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description string   `json:"description"`
	CreatedAt   string   `json:"created_at"`
	Secret      string   `json:"secret,omitempty"` // only when created
}

func webhookOut(w *store.Webhook) webhookJSON {
	return webhookJSON{ID: w.ID, Type: "webhook", URL: w.URL, Events: w.Events, Description: w.Description,
		CreatedAt: store.FormatTime(w.CreatedAt)}
}

type deliveryJSON struct {
	ID             string  `json:"id"`
	EventType      string  `json:"event_type"`
	SessionID      string  `json:"session_id"`
	Status         string  `json:"status"`
	Attempts       int     `json:"attempts"`
	ResponseStatus *int    `json:"response_status"`
	CreatedAt      string  `json:"created_at"`
	LastAttemptAt  *string `json:"last_attempt_at"`
}

func deliveryOut(d *store.Delivery) deliveryJSON {
	return deliveryJSON{ID: d.ID, EventType: d.EventType, SessionID: d.SessionID, Status: d.Status, Attempts: d.Attempts,
		ResponseStatus: d.ResponseStatus, CreatedAt: store.FormatTime(d.CreatedAt), LastAttemptAt: timePtr(d.LastAttemptAt)}
}

func (s *Server) handleWebhookCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	in, err := validate.WebhookInput(o)
	if err != nil {
		return err
	}
	if err := validate.WebhookTarget(in.URL, s.cfg.EgressAllow); err != nil {
		return err
	}
	hook, err := s.db.CreateWebhook(r.Context(), u.ID, in.URL, in.Events, in.Description)
	if err != nil {
		return err
	}
	out := webhookOut(hook)
	out.Secret = hook.Secret
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) handleWebhookList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	hooks, err := s.db.ListWebhooks(r.Context(), u.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(hooks, webhookOut))
	return nil
}

func (s *Server) handleWebhookGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	hook, err := s.db.GetWebhook(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookOut(hook))
	return nil
}

func (s *Server) handleWebhookDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	if err := s.db.DeleteWebhook(r.Context(), u.ID, id); err != nil {
		return err
	}
	writeDetail(w, http.StatusOK, "Webhook deleted")
	return nil
}

func (s *Server) handleWebhookDeliveries(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	list, err := s.db.ListDeliveries(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(list, deliveryOut))
	return nil
}

func (s *Server) handleWebhookRedeliver(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Webhook")
	if err != nil {
		return err
	}
	did, err := validate.ID(ps.ByName("delivery_id"), "Delivery")
	if err != nil {
		return err
	}
	if err := s.db.Redeliver(r.Context(), u.ID, id, did); err != nil {
		return err
	}
	writeDetail(w, http.StatusAccepted, "Delivery queued")
	return nil
}

// Dispatcher sends webhook deliveries as they come due.
type Dispatcher struct {
	DB     *store.DB
	Allow  []egress.Rule // --egress-allow
	Log    *slog.Logger
	Client *http.Client // nil: one that refuses forbidden addresses
	// Every is how often due deliveries are looked for (default 500 ms).
	Every time.Duration
}

// maxAttempts is how often a delivery is tried before it fails for good.
const maxAttempts = 8

// Run sends due deliveries until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	if d.Client == nil {
		d.Client = safeClient(d.Allow)
	}
	if d.Every <= 0 {
		d.Every = 500 * time.Millisecond
	}
	t := time.NewTicker(d.Every)
	defer t.Stop()
	for {
		d.sendDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Dispatcher) sendDue(ctx context.Context) {
	due, hooks, err := d.DB.DueDeliveries(ctx, 20)
	if err != nil {
		if ctx.Err() == nil {
			d.Log.Error("reading webhook deliveries", "err", err)
		}
		return
	}
	for _, del := range due {
		hook := hooks[del.WebhookID]
		if hook == nil {
			continue
		}
		status, err := d.send(ctx, hook, del)
		ok := err == nil && status/100 == 2
		var next time.Time
		if !ok && del.Attempts+1 < maxAttempts {
			next = time.Now().Add(min(time.Duration(1<<del.Attempts)*time.Second, time.Hour))
		}
		switch {
		case ok:
			metrics.WebhookAttempts.WithLabelValues("succeeded").Inc()
		case !next.IsZero():
			metrics.WebhookAttempts.WithLabelValues("retrying").Inc()
		default:
			metrics.WebhookAttempts.WithLabelValues("failed").Inc()
		}
		if !ok {
			d.Log.Warn("webhook delivery failed", "webhook", hook.ID, "delivery", del.ID, "status", status, "err", err, "attempt", del.Attempts+1)
		}
		if err := d.DB.RecordAttempt(context.WithoutCancel(ctx), del.ID, status, ok, next); err != nil {
			d.Log.Error("recording a webhook delivery", "delivery", del.ID, "err", err)
		}
	}
}

// Sign is the Standard Webhooks signature of body for message id at ts:
// "v1," and the base64 HMAC-SHA256 of "id.ts.body" keyed with the
// secret's decoded bytes.
func Sign(secret, id string, ts int64, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

func (d *Dispatcher) send(ctx context.Context, hook *store.Webhook, del *store.Delivery) (int, error) {
	ts := time.Now().Unix()
	sig, err := Sign(hook.Secret, del.ID, ts, []byte(del.Body))
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", hook.URL, bytes.NewReader([]byte(del.Body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "aod-webhooks")
	req.Header.Set("webhook-id", del.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	res, err := d.Client.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// safeClient connects only to addresses sprites could reach: each
// resolved address is checked at connect time (no DNS rebinding), and
// redirects are not followed.
func safeClient(rules []egress.Rule) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, err
			}
			var refusal string
			for _, ip := range ips {
				if why := egress.AddressRefusal(rules, host, ip); why != "" {
					refusal = why
					continue
				}
				return dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			}
			return nil, errors.New("refused: " + refusal)
		},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
