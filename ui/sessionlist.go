package ui

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// Bounds of the session list page.
const (
	sessionPageSize = 50   // rows per page
	maxSessionPage  = 1000 // the deepest page number served
)

// sessionStatuses are the statuses the list filters by, in the order the
// select offers them.
var sessionStatuses = []string{store.StatusPending, store.StatusRunning, store.StatusCompleted, store.StatusFailed, store.StatusTerminated}

type sessionListPage struct {
	Sessions []*store.SessionSummary
	Agents   []*store.Agent // the filter's choices, archived ones included
	Statuses []string
	Status   string // the filters in force ("": any)
	AgentID  string
	Query    string
	Filtered bool // some filter is in force
	Page     int
	Newer    string // the URL of the page before, "" on the first
	Older    string // the URL of the page after, "" on the last
	LiveURL  string // where the page's script asks how live rows stand
}

// listFilters reads the list's query string: a status it knows, an agent
// id, a search cut to store.MaxPromptQuery characters and a page number;
// anything else is ignored.
func listFilters(q url.Values) (status, agentID, query string, page int) {
	if s := q.Get("status"); slices.Contains(sessionStatuses, s) {
		status = s
	}
	if id, ok := store.CanonicalID(q.Get("agent")); ok {
		agentID = id
	}
	query = strings.TrimSpace(q.Get("q"))
	if utf8.RuneCountInString(query) > store.MaxPromptQuery {
		query = string([]rune(query)[:store.MaxPromptQuery])
	}
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	return status, agentID, query, min(page, maxSessionPage)
}

// listURL is the session list's address for these filters and page.
func listURL(status, agentID, query string, page int) string {
	v := url.Values{}
	if status != "" {
		v.Set("status", status)
	}
	if agentID != "" {
		v.Set("agent", agentID)
	}
	if query != "" {
		v.Set("q", query)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/ui/sessions"
	}
	return "/ui/sessions?" + v.Encode()
}

// handleSessions is the session list: filtered by status, agent and a
// search of the prompts, newest first, a page at a time.
func (u *UI) handleSessions(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	status, agentID, query, page := listFilters(r.URL.Query())
	f := store.SessionFilter{AgentID: agentID, Query: query, Offset: (page - 1) * sessionPageSize, Limit: sessionPageSize}
	if status != "" {
		f.Statuses = []string{status}
	}
	list, more, err := u.db.SessionSummaries(r.Context(), s.User.ID, f)
	if err != nil {
		return err
	}
	agents, err := u.db.ListAgents(r.Context(), s.User.ID, true)
	if err != nil {
		return err
	}
	p := sessionListPage{Sessions: list, Agents: agents, Statuses: sessionStatuses,
		Status: status, AgentID: agentID, Query: query, Filtered: status != "" || agentID != "" || query != "",
		Page: page, LiveURL: "/ui/session-states"}
	if page > 1 {
		p.Newer = listURL(status, agentID, query, page-1)
	}
	if more && page < maxSessionPage {
		p.Older = listURL(status, agentID, query, page+1)
	}
	u.render(w, r, http.StatusOK, "sessions", s, p)
	return nil
}

// sessionState is how a listed session stands, for the list's script:
// the cells it refreshes, formatted as the page formats them.
type sessionState struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Live     bool   `json:"live"` // pending or running: ask again
	Duration string `json:"duration"`
	Turns    int    `json:"turns"`
	Cost     string `json:"cost"`
}

// handleSessionStates answers the list's script: how the sessions named
// by ids (comma-separated, at most a page's worth) stand now, with one
// query. Only the user's own are in the answer; an id of anyone else's, or
// of none, is left out.
func (u *UI) handleSessionStates(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	w.Header().Set("Cache-Control", "no-store")
	parts := strings.Split(r.URL.Query().Get("ids"), ",")
	if len(parts) > store.MaxSessionPage {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		return json.NewEncoder(w).Encode(map[string]string{"detail": "Ask for at most " + strconv.Itoa(store.MaxSessionPage) + " sessions at a time"})
	}
	var ids []string
	for _, raw := range parts {
		if id, ok := store.CanonicalID(strings.TrimSpace(raw)); ok && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	out := struct {
		Sessions []sessionState `json:"sessions"`
	}{Sessions: []sessionState{}}
	if len(ids) > 0 {
		list, _, err := u.db.SessionSummaries(r.Context(), s.User.ID, store.SessionFilter{IDs: ids})
		if err != nil {
			return err
		}
		for _, x := range list {
			out.Sessions = append(out.Sessions, sessionState{ID: x.ID, Status: x.Status, Live: x.Live(),
				Duration: formatTook(x.StartedAt, x.EndedAt), Turns: x.Turns, Cost: formatUSD(x.Usage)})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// Dashboard panels.
const (
	dashboardRows = 10 // running and recently ended sessions shown
	spendDays     = 7  // the spend panel's window, today included
)

// spendPanel is the dashboard's spend of the last days, formatted.
type spendPanel struct {
	Total    string
	Turns    int // turns that reported usage
	Unpriced int // of those, turns with no known cost
	Max      float64
	Days     []spendDay // oldest first
}

type spendDay struct {
	Label  string // "Mon 2 Jun"
	Amount string
	USD    float64
	Turns  int
}

// dashboardSessions fills the dashboard's running and recently ended
// sessions and the spend of the last days.
func (u *UI) dashboardSessions(r *http.Request, s *session, p *dashboardPage) error {
	var err error
	p.Running, p.MoreRunning, err = u.db.SessionSummaries(r.Context(), s.User.ID, store.SessionFilter{
		Statuses: []string{store.StatusPending, store.StatusRunning}, Limit: dashboardRows})
	if err != nil {
		return err
	}
	p.Recent, _, err = u.db.SessionSummaries(r.Context(), s.User.ID, store.SessionFilter{
		Statuses: []string{store.StatusCompleted, store.StatusFailed, store.StatusTerminated}, ByChange: true, Limit: dashboardRows})
	if err != nil {
		return err
	}
	sp, err := u.db.RecentSpend(r.Context(), s.User.ID, spendDays)
	if err != nil {
		return err
	}
	p.Spend = spendPanel{Total: formatDollars(sp.TotalUSD), Turns: sp.Turns, Unpriced: sp.Unpriced, Max: sp.MaxUSD}
	for _, d := range sp.Days {
		p.Spend.Days = append(p.Spend.Days, spendDay{Label: d.Day.Format("Mon 2 Jan"), Amount: formatDollars(d.USD), USD: d.USD, Turns: d.Turns})
	}
	p.LiveURL = "/ui/session-states"
	return nil
}

// formatDollars is an amount in US dollars: to the cent from a dollar up
// (and for nothing), else to four places as the session pages show costs:
// "$12.35", "$0.00", "$0.0125".
func formatDollars(v float64) string {
	if v > 0 && v < 1 {
		return "$" + strconv.FormatFloat(v, 'f', 4, 64)
	}
	return "$" + strconv.FormatFloat(v, 'f', 2, 64)
}
