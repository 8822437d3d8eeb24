package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of the session lists.
const (
	// MaxSessionPage is the most sessions one list query returns.
	MaxSessionPage = 100
	// MaxPromptQuery is the longest prompt search, in characters.
	MaxPromptQuery = 200
	// PromptExcerpt is how many characters of the first prompt a list
	// shows.
	PromptExcerpt = 120
)

// SessionFilter narrows SessionSummaries. The zero value lists every
// session, newest first.
type SessionFilter struct {
	Statuses []string // any of these statuses; none: every status
	AgentID  string   // only this agent's sessions; "": any agent
	// Query keeps sessions one of whose turns' prompts holds it: a plain
	// substring (% and _ are no wildcards), case-insensitive for ASCII
	// letters, at most MaxPromptQuery characters.
	Query string
	// IDs keeps only these sessions (at most MaxSessionPage); nil: any.
	IDs []string
	// ByChange orders by the last change, most recent first (for ended
	// sessions: when they ended), instead of newest first.
	ByChange bool
	Offset   int
	Limit    int // 1 to MaxSessionPage; 0 means MaxSessionPage
}

// SessionSummary is a session as the lists show it, with its turns summed.
type SessionSummary struct {
	ID        string
	AgentID   string // "" when the agent row is gone
	AgentName string
	Runtime   string
	Model     string
	Status    string
	ExitCode  *int
	Turns     int
	CreatedAt time.Time
	UpdatedAt time.Time
	StartedAt *time.Time // the first turn's start; nil before one started
	// EndedAt is the last turn's end; nil while the session is pending or
	// running, so a duration runs until now.
	EndedAt *time.Time
	Usage   *UsageView // the turns' usage summed and priced; nil when none reported any
	// Prompt is the first turn's prompt, its whitespace collapsed, cut to
	// PromptExcerpt characters (PromptCut says it was longer).
	Prompt    string
	PromptCut bool
}

// Live reports whether the session may still change: pending or running.
func (s *SessionSummary) Live() bool { return !TerminalStatus(s.Status) }

// likeContains is a LIKE pattern matching s anywhere, with LIKE's own
// wildcards in s escaped (ESCAPE '\').
func likeContains(s string) string {
	return "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s) + "%"
}

// SessionSummaries lists the user's sessions that pass f, and reports
// whether more follow the page. One query: the turn figures come from
// subqueries on session_turns' primary key, which SQLite evaluates for the
// page's rows alone when an index gives the order. No index serves a
// substring search: it reads the prompts of the user's sessions (the
// user's only, through sessions_user) until the page is full.
func (db *DB) SessionSummaries(ctx context.Context, userID string, f SessionFilter) ([]*SessionSummary, bool, error) {
	limit := f.Limit
	if limit <= 0 || limit > MaxSessionPage {
		limit = MaxSessionPage
	}
	if utf8.RuneCountInString(f.Query) > MaxPromptQuery {
		return nil, false, Errorf(Invalid, "The search is longer than %d characters", MaxPromptQuery)
	}
	if len(f.IDs) > MaxSessionPage {
		return nil, false, Errorf(Invalid, "At most %d sessions at a time", MaxSessionPage)
	}
	if f.IDs != nil && len(f.IDs) == 0 {
		return []*SessionSummary{}, false, nil
	}
	var where strings.Builder
	args := []any{userID}
	where.WriteString(`s.user_id = ?`)
	in := func(column string, values []string) {
		where.WriteString(` AND ` + column + ` IN (?` + strings.Repeat(",?", len(values)-1) + `)`)
		for _, v := range values {
			args = append(args, v)
		}
	}
	if len(f.Statuses) > 0 {
		in("s.status", f.Statuses)
	}
	if len(f.IDs) > 0 {
		in("s.id", f.IDs)
	}
	if f.AgentID != "" {
		where.WriteString(` AND s.agent_id = ?`)
		args = append(args, f.AgentID)
	}
	if f.Query != "" {
		where.WriteString(` AND EXISTS (SELECT 1 FROM session_turns q WHERE q.session_id = s.id AND q.prompt LIKE ? ESCAPE '\')`)
		args = append(args, likeContains(f.Query))
	}
	order := `s.id DESC`
	switch {
	case f.ByChange:
		order = `s.updated_at DESC, s.id DESC`
	case len(f.Statuses) > 1:
		// Not the order of sessions_user: SQLite then reads the few
		// sessions of these statuses through sessions_user_status and
		// sorts them, instead of walking every session of the user in id
		// order to pick them out (what it does without statistics).
		order = `+s.id DESC`
	}
	args = append(args, limit+1, max(f.Offset, 0))
	rows, err := db.reader.QueryContext(ctx, `SELECT s.id, s.agent_id, a.name, s.runtime, s.model, s.status, s.exit_code,
		s.created_at, s.updated_at,
		(SELECT count(*) FROM session_turns t WHERE t.session_id = s.id),
		(SELECT min(started_at) FROM session_turns t WHERE t.session_id = s.id),
		(SELECT max(ended_at) FROM session_turns t WHERE t.session_id = s.id),
		(SELECT json_group_array(json(usage)) FROM session_turns t WHERE t.session_id = s.id AND json_valid(usage)),
		(SELECT substr(prompt, 1, `+strconv.Itoa(PromptExcerpt+1)+`) FROM session_turns t WHERE t.session_id = s.id ORDER BY turn_number LIMIT 1)
		FROM sessions s LEFT JOIN agents a ON a.id = s.agent_id
		WHERE `+where.String()+` ORDER BY `+order+` LIMIT ? OFFSET ?`, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	out := []*SessionSummary{}
	for rows.Next() {
		x, err := scanSummary(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	more := len(out) > limit
	if more {
		out = out[:limit]
	}
	return out, more, nil
}

func scanSummary(rows *sql.Rows) (*SessionSummary, error) {
	var x SessionSummary
	var agent, name, started, ended, usages, prompt sql.NullString
	var exit sql.NullInt64
	var created, updated string
	if err := rows.Scan(&x.ID, &agent, &name, &x.Runtime, &x.Model, &x.Status, &exit, &created, &updated,
		&x.Turns, &started, &ended, &usages, &prompt); err != nil {
		return nil, err
	}
	x.AgentID, x.AgentName = agent.String, name.String
	if exit.Valid {
		c := int(exit.Int64)
		x.ExitCode = &c
	}
	x.CreatedAt, _ = ParseTime(created)
	x.UpdatedAt, _ = ParseTime(updated)
	x.StartedAt = parseNullTime(started)
	if !x.Live() {
		x.EndedAt = parseNullTime(ended)
	}
	x.Usage = sumUsage(usages.String, x.Runtime, x.Model)
	p := prompt.String
	if utf8.RuneCountInString(p) > PromptExcerpt {
		p, x.PromptCut = string([]rune(p)[:PromptExcerpt]), true
	}
	x.Prompt = strings.Join(strings.Fields(p), " ")
	return &x, nil
}

// sumUsage sums a JSON array of turn usages, priced for runtime and
// model, the way AttachUsage does; nil when none is there.
func sumUsage(array, runtime, model string) *UsageView {
	var raws []json.RawMessage
	if array == "" || json.Unmarshal([]byte(array), &raws) != nil {
		return nil
	}
	var total *UsageView
	for _, raw := range raws {
		v := usageView(raw, runtime, model)
		if v == nil {
			continue
		}
		if total == nil {
			total = &UsageView{}
			total.addView(v, true)
		} else {
			total.addView(v, false)
		}
	}
	return total
}

// Spend is what a user's turns cost over the last days, by the day their
// turns ended (UTC).
type Spend struct {
	Days     []DaySpend // one per day, oldest first, today last
	TotalUSD float64
	MaxUSD   float64 // the dearest day's
	Turns    int     // turns that reported usage
	Unpriced int     // of those, turns whose cost is unknown (not in the sums)
}

// DaySpend is one day of a Spend.
type DaySpend struct {
	Day   time.Time // midnight UTC
	USD   float64
	Turns int
}

// RecentSpend sums the priced usage of the user's turns that ended in the
// last days days, today (UTC) included.
//
// A session's updated_at is stamped whenever one of its turns ends (in the
// same transaction, see finishTx and TerminateSession) and never goes
// back, so only sessions changed since the window began can hold a turn
// that ended in it: the sessions_user_updated index finds those without
// reading the user's older sessions.
func (db *DB) RecentSpend(ctx context.Context, userID string, days int) (*Spend, error) {
	days = max(days, 1)
	now := db.now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	since := today.AddDate(0, 0, -(days - 1))
	sp := &Spend{}
	byDay := map[string]int{}
	for d := since; !d.After(today); d = d.AddDate(0, 0, 1) {
		byDay[d.Format(time.DateOnly)] = len(sp.Days)
		sp.Days = append(sp.Days, DaySpend{Day: d})
	}
	from := FormatTime(since)
	rows, err := db.reader.QueryContext(ctx, `SELECT substr(t.ended_at, 1, 10), s.runtime, s.model, t.usage
		FROM sessions s JOIN session_turns t ON t.session_id = s.id
		WHERE s.user_id = ? AND s.updated_at >= ? AND t.ended_at >= ? AND t.usage IS NOT NULL`, userID, from, from)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var day, runtime, model string
		var raw []byte
		if err := rows.Scan(&day, &runtime, &model, &raw); err != nil {
			return nil, err
		}
		i, ok := byDay[day]
		if !ok {
			continue // outside the window (a clock that went back)
		}
		v := usageView(raw, runtime, model)
		if v == nil {
			continue
		}
		sp.Turns++
		sp.Days[i].Turns++
		if v.CostUSD == nil {
			sp.Unpriced++
			continue
		}
		sp.Days[i].USD += *v.CostUSD
		sp.TotalUSD += *v.CostUSD
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, d := range sp.Days {
		sp.MaxUSD = max(sp.MaxUSD, d.USD)
	}
	return sp, nil
}
