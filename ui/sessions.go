package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

type sessionPage struct {
	S            *store.Session
	Agent        *store.Agent
	Environment  *store.Environment // the version the session runs
	Prompt       string             // the latest turn's
	Backend      string
	Log          []logPiece
	LastID       int64 // the last log row rendered; the live stream resumes after it
	LastTurn     int
	Timeout      int
	Terminal     bool
	Network      string              // the policy, as the network_policy stage would say
	Egress       []store.EgressEntry // what the sprite asked the egress proxy for
	ProvisionLog string              // what the setup script wrote ("": none)
	Turns        []*store.Turn       // every turn, by number
	Curl         string              // the follow-up form's request as a curl command
}

// maxRenderedRows bounds the log rendered into the page; the live stream
// carries on from wherever the page stopped.
const maxRenderedRows = 20000

func (u *UI) handleSession(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return err
	}
	id := sess.ID
	if err := u.db.AttachUsage(r.Context(), sess); err != nil {
		return err
	}
	p := sessionPage{S: sess, Timeout: validate.DefaultTimeout, Terminal: store.TerminalStatus(sess.Status)}
	p.Curl = curlCommand(http.MethodPost, u.baseURL(r)+"/sessions/"+id+"/prompt", map[string]any{"prompt": "<prompt>", "timeout": p.Timeout})
	if sess.AgentID != "" {
		if a, err := u.db.GetAgent(r.Context(), s.User.ID, sess.AgentID); err == nil {
			p.Agent = a
		}
	}
	if e, err := u.db.SessionEnvironment(r.Context(), sess.ID); err == nil {
		p.Environment = e
	}
	turns, err := u.db.ListTurns(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p.Turns = turns
	if len(turns) > 0 {
		last := turns[len(turns)-1]
		p.Prompt = last.Prompt
		p.Timeout = last.Timeout
	}
	p.Backend = backendLabel(sess)
	if p.Egress, err = u.db.ListEgress(r.Context(), s.User.ID, id); err != nil {
		return err
	}
	if p.ProvisionLog, err = u.db.ProvisionLog(r.Context(), s.User.ID, id); err != nil {
		return err
	}
	p.Network = "unrestricted (public hosts only)"
	if p.Environment != nil && p.Environment.Networking.Type == "limited" {
		p.Network = "limited to " + strings.Join(p.Environment.Networking.AllowedHosts(), ", ") + " and the runtime's model API"
	}
	var lb logBuilder
	for after := int64(0); ; {
		rows, err := u.db.Events(r.Context(), id, after, 1000)
		if err != nil {
			return err
		}
		for i := range rows {
			lb.add(&rows[i])
		}
		if len(rows) < 1000 || lb.rows >= maxRenderedRows {
			break
		}
		after = rows[len(rows)-1].ID
	}
	p.Log, p.LastID, p.LastTurn = lb.pieces, lb.lastID, lb.lastTurn
	u.render(w, r, http.StatusOK, "session_detail", s, p)
	return nil
}

// backendLabel says where the session's sprite stands.
func backendLabel(s *store.Session) string {
	switch {
	case s.ProvisionState == store.ProvisionRemoved:
		return "sprite removed (the retention passed)"
	case s.Status == store.StatusTerminated:
		return "stopped · files kept until the retention passes"
	case s.ProvisionState == store.ProvisionDone && s.RuntimeSessionID != "":
		return "sprite ready · conversation " + s.RuntimeSessionID
	case s.ProvisionState == store.ProvisionDone:
		return "sprite ready"
	case s.ProvisionState == store.ProvisionRunning:
		return "provisioning"
	}
	return "not provisioned"
}

// logPiece is one span of the rendered log: a class and its text.
type logPiece struct {
	Class string
	Text  string
}

// logBuilder renders log rows the way static/session.js renders live
// events, so the page and the stream read alike: stage rows on their own
// line as "[stage] name state", output prefixed "[stdout] " or "[stderr] "
// at each line start (rows are byte chunks, not lines), a marker when a
// later turn begins.
type logBuilder struct {
	pieces     []logPiece
	midLine    bool   // the last output did not end its line
	lastStream string // stream of that output
	lastID     int64
	lastTurn   int
	rows       int
}

func (b *logBuilder) emit(class, text string) {
	b.pieces = append(b.pieces, logPiece{Class: class, Text: text})
}

func (b *logBuilder) endLine() {
	if b.midLine {
		b.emit("", "\n")
		b.midLine = false
	}
}

func (b *logBuilder) add(e *store.Event) {
	b.rows++
	switch e.Kind {
	case store.KindStage:
		b.endLine()
		b.emit("stage", stageText(e)+"\n")
	case store.KindOutput:
		if e.Turn > 1 && e.Turn != b.lastTurn {
			b.endLine()
			b.emit("turn", fmt.Sprintf("[turn %d]\n", e.Turn))
		}
		if e.Turn > 0 {
			b.lastTurn = e.Turn
		}
		if b.midLine && e.Stream != b.lastStream {
			b.endLine()
		}
		data := e.Data
		for data != "" {
			line, rest, found := strings.Cut(data, "\n")
			if found {
				line += "\n"
			}
			if !b.midLine {
				b.emit("tag tag-"+e.Stream, "["+e.Stream+"] ")
			}
			b.emit(e.Stream, line)
			b.midLine = !found
			data = rest
		}
		b.lastStream = e.Stream
	default:
		return // the runner's own markers
	}
	b.lastID = e.ID
}

// stageText is "[stage] name state", with the duration and any message.
func stageText(e *store.Event) string {
	t := "[stage] " + e.Stage + " " + e.State
	if e.DurationMS != nil && e.State != store.StageStarted {
		t += fmt.Sprintf(" (%d ms)", *e.DurationMS)
	}
	if e.Data != "" {
		t += ": " + e.Data
	}
	return t
}

func (u *UI) handleSessionPrompt(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return err
	}
	id := sess.ID
	back := "/ui/sessions/" + id
	if err := u.sess.CheckPromptable(r.Context(), s.User.ID, id); err != nil {
		return u.refuse(w, r, back, err)
	}
	prompt, timeout, problem := promptFields(r)
	if problem != "" {
		u.redirect(w, r, back, failure(problem))
		return nil
	}
	if _, err := u.sess.Prompt(r.Context(), s.User.ID, id, prompt, timeout); err != nil {
		return u.refuse(w, r, back, err)
	}
	u.redirect(w, r, back, success("Follow-up sent."))
	return nil
}

// handleSessionState is the session's status and exit code as JSON, for
// the page's script once a turn has ended.
func (u *UI) handleSessionState(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(struct {
		Status   string `json:"status"`
		ExitCode *int   `json:"exit_code"`
	}{sess.Status, sess.ExitCode})
}

func (u *UI) handleSessionInterrupt(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	return u.sessionAction(w, r, ps, s, u.sess.Interrupt, "Stopping the turn: the session stays open for your next prompt.")
}

func (u *UI) handleSessionTerminate(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	return u.sessionAction(w, r, ps, s, u.sess.Terminate, "Session terminated.")
}

// sessionAction runs a session page's button (interrupt, terminate) and
// goes back to the page saying how it went.
func (u *UI) sessionAction(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session,
	act func(ctx context.Context, userID, id string) (*store.Session, error), done string) error {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return err
	}
	id := sess.ID
	back := "/ui/sessions/" + id
	if _, err := act(r.Context(), s.User.ID, id); err != nil {
		return u.refuse(w, r, back, err)
	}
	u.redirect(w, r, back, success(done))
	return nil
}

// handleSessionStream is the session's SSE stream for the page's
// EventSource: same origin, authenticated by the login cookie, so no API
// token ever reaches the browser.
func (u *UI) handleSessionStream(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	sess, err := u.ownSession(r, ps, s)
	if err != nil {
		return err
	}
	id := sess.ID
	cursor, err := sse.ParseCursor(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil
	}
	if err := u.cfg.Streams.Stream(w, r, s.User.ID, id, cursor); err != nil {
		if store.AsError(err) != nil {
			return err // a limit, or gone before the stream began: nothing written yet
		}
		u.log.Warn("ui: stream ended with an error", "session", id, "err", err)
	}
	return nil
}

// ownSession is the session the request's path names, the user's own
// (another user's, or a malformed id, is a 404).
func (u *UI) ownSession(r *http.Request, ps httprouter.Params, s *session) (*store.Session, error) {
	id, err := pathID(ps, "Session")
	if err != nil {
		return nil, err
	}
	return u.db.GetSession(r.Context(), s.User.ID, id)
}
