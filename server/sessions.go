package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// resourceJSON is a session's repository as responses show it: never its
// token; checkout only when one was asked for, so a resource without one
// keeps the original's exact shape.
type resourceJSON struct {
	Type      string `json:"type"`
	URL       string `json:"url"`
	MountPath string `json:"mount_path"`
	Checkout  string `json:"checkout,omitempty"`
}

type sessionJSON struct {
	ID            string         `json:"id"`
	AgentID       *string        `json:"agent_id"`
	EnvironmentID *string        `json:"environment_id"`
	Runtime       string         `json:"runtime"`
	Provider      string         `json:"provider"`
	Status        string         `json:"status"`
	ExitCode      *int           `json:"exit_code"`
	CreatedAt     string         `json:"created_at"`
	UpdatedAt     string         `json:"updated_at"`
	Resources     []resourceJSON `json:"resources"`
	TurnCount     int            `json:"turn_count"`
	CurrentTurn   *int           `json:"current_turn"`
	// Usage is aod's own: the turns' tokens and cost summed; so are the
	// budget and whether the cost reached it.
	Usage           *store.UsageView `json:"usage"`
	BudgetUSD       *float64         `json:"budget_usd"`
	BudgetExhausted bool             `json:"budget_exhausted"`
}

func resourcesOut(rs []store.Resource) []resourceJSON {
	out := make([]resourceJSON, len(rs))
	for i, r := range rs {
		out[i] = resourceJSON{Type: r.Type, URL: r.URL, MountPath: r.MountPath, Checkout: r.Checkout}
	}
	return out
}

func sessionOut(s *store.Session) sessionJSON {
	var current *int
	if s.CurrentTurn > 0 {
		c := s.CurrentTurn
		current = &c
	}
	return sessionJSON{
		ID: s.ID, AgentID: nullIfEmpty(s.AgentID), EnvironmentID: nullIfEmpty(s.EnvironmentID),
		Runtime: s.Runtime, Provider: s.Provider, Status: s.Status, ExitCode: s.ExitCode,
		CreatedAt: store.FormatTime(s.CreatedAt), UpdatedAt: store.FormatTime(s.UpdatedAt),
		Resources: resourcesOut(s.Resources), TurnCount: s.TurnCount, CurrentTurn: current, Usage: s.Usage,
		BudgetUSD: s.BudgetUSD, BudgetExhausted: s.BudgetExhausted,
	}
}

type turnJSON struct {
	TurnNumber int    `json:"turn_number"`
	Prompt     string `json:"prompt"`
	Status     string `json:"status"`
	ExitCode   *int   `json:"exit_code"`
	// Interrupted marks a turn an interrupt ended (its status is
	// "completed": the published SDKs know only four turn statuses).
	Interrupted bool `json:"interrupted"`
	// Result is the CLI's final answer, Usage the turn's tokens and cost
	// (aod's own; null when none).
	Result    *string          `json:"result"`
	Usage     *store.UsageView `json:"usage"`
	CreatedAt string           `json:"created_at"`
	StartedAt *string          `json:"started_at"`
	EndedAt   *string          `json:"ended_at"`
}

func turnOut(t *store.Turn) turnJSON {
	return turnJSON{TurnNumber: t.Number, Prompt: t.Prompt, Status: t.Status, ExitCode: t.ExitCode, Interrupted: t.Interrupted,
		Result: t.Result, Usage: t.UsageView,
		CreatedAt: store.FormatTime(t.CreatedAt), StartedAt: timePtr(t.StartedAt), EndedAt: timePtr(t.EndedAt)}
}

func streamURL(id string) string { return "/sessions/" + id + "/stream" }

func (s *Server) handleSessionCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	in, err := validate.SessionInput(o)
	if err != nil {
		return err
	}
	sess, err := s.sessions.Create(r.Context(), u.ID, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, struct {
		ID            string         `json:"id"`
		Status        string         `json:"status"`
		StreamURL     string         `json:"stream_url"`
		EnvironmentID *string        `json:"environment_id"`
		Resources     []resourceJSON `json:"resources"`
		CurrentTurn   int            `json:"current_turn"`
	}{sess.ID, sess.Status, streamURL(sess.ID), nullIfEmpty(sess.EnvironmentID), resourcesOut(sess.Resources), sess.CurrentTurn})
	return nil
}

func (s *Server) handleSessionList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	sessions, err := s.db.ListSessions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	if err := s.db.AttachUsage(r.Context(), sessions...); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(sessions, sessionOut))
	return nil
}

func (s *Server) handleSessionGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	sess, err := s.db.GetSession(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	if err := s.db.AttachUsage(r.Context(), sess); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sessionOut(sess))
	return nil
}

func (s *Server) handleSessionTurns(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	turns, err := s.db.ListTurns(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(turns, turnOut))
	return nil
}

// egressJSON is one row of a session's egress record.
type egressJSON struct {
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Allowed bool   `json:"allowed"`
	Count   int    `json:"count"`
	FirstAt string `json:"first_at"`
	LastAt  string `json:"last_at"`
}

func egressOut(e store.EgressEntry) egressJSON {
	return egressJSON{Host: e.Host, Port: e.Port, Allowed: e.Allowed, Count: e.Count, FirstAt: store.FormatTime(e.FirstAt), LastAt: store.FormatTime(e.LastAt)}
}

// handleSessionEgress lists every host the session's sprite asked the
// egress proxy for.
func (s *Server) handleSessionEgress(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	entries, err := s.db.ListEgress(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(entries, egressOut))
	return nil
}

// handleSessionProvisionLog answers with what the session's provisioning
// script wrote, as plain text: empty when it ran none (or not yet).
func (s *Server) handleSessionProvisionLog(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	log, err := s.db.ProvisionLog(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff") // never rendered as HTML, whatever the script printed
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, log)
	return nil
}

func (s *Server) handleSessionPrompt(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	// The state check comes before the body is read, as in the original.
	if err := s.sessions.CheckPromptable(r.Context(), u.ID, id); err != nil {
		return err
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	prompt, timeout, err := validate.Prompt(o)
	if err != nil {
		return err
	}
	sess, err := s.sessions.Prompt(r.Context(), u.ID, id, prompt, timeout)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, struct {
		ID          string `json:"id"`
		Status      string `json:"status"`
		StreamURL   string `json:"stream_url"`
		CurrentTurn int    `json:"current_turn"`
	}{sess.ID, sess.Status, streamURL(sess.ID), sess.CurrentTurn})
	return nil
}

func (s *Server) handleSessionTerminate(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	sess, err := s.sessions.Terminate(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{sess.ID, sess.Status})
	return nil
}

// handleSessionInterrupt stops the session's turn and keeps the session:
// 202 with the status at the time of asking.
func (s *Server) handleSessionInterrupt(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	sess, err := s.sessions.Interrupt(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{sess.ID, sess.Status})
	return nil
}

func (s *Server) handleSessionDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	if err := s.sessions.Delete(r.Context(), u.ID, id); err != nil {
		return err
	}
	writeDetail(w, http.StatusOK, "Session deleted")
	return nil
}

func (s *Server) handleSessionStream(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	if _, err := s.db.GetSession(r.Context(), u.ID, id); err != nil {
		return err
	}
	cursor, err := sse.ParseCursor(r)
	if err != nil {
		return store.Errorf(store.BadRequest, "%s", err.Error())
	}
	if err := s.cfg.Streams.Stream(w, r, u.ID, id, cursor); err != nil {
		if store.AsError(err) != nil {
			return err // a limit, or deleted before the stream began: nothing written yet
		}
		// Headers are gone by now: log, don't answer.
		s.log.Warn("stream ended with an error", "session", id, "err", fmt.Sprint(err))
	}
	return nil
}

// maxEventsPage bounds a page of GET /sessions/{id}/events.
const maxEventsPage = 1000

// handleSessionEvents pages through a session's stored events, as the
// stream carries them, for clients that cannot hold a stream.
func (s *Server) handleSessionEvents(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	if _, err := s.db.GetSession(r.Context(), u.ID, id); err != nil {
		return err
	}
	q := r.URL.Query()
	after, limit := int64(0), 100
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return store.Errorf(store.BadRequest, "after must be an event id (a non-negative integer)")
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxEventsPage {
			return store.Errorf(store.BadRequest, "limit must be an integer from 1 to %d", maxEventsPage)
		}
	}
	rows, err := s.db.Events(r.Context(), id, after, limit+1)
	if err != nil {
		return err
	}
	more := len(rows) > limit
	if more {
		rows = rows[:limit]
	}
	// Written by hand: each event keeps the stream's exact bytes (the
	// JSON encoder would respace them).
	var b bytes.Buffer
	b.WriteString(`{"data": [`)
	n := 0
	for i := range rows {
		if ev, ok := sse.EventJSON(&rows[i]); ok {
			if n > 0 {
				b.WriteString(", ")
			}
			b.Write(ev)
			n++
		}
	}
	b.WriteString(`], "has_more": ` + strconv.FormatBool(more) + `, "next_after": `)
	if len(rows) > 0 {
		b.WriteString(strconv.FormatInt(rows[len(rows)-1].ID, 10))
	} else {
		b.WriteString("null")
	}
	b.WriteString("}\n")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
	return nil
}
