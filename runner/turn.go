package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/aod/aod/internal/metrics"
	"github.com/aod/aod/runner/internal/cmdout"
	"github.com/aod/aod/runner/runtimes"
	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

const (
	defaultTurnTimeout = 600 * time.Second
	maxEventBytes      = 64 << 10 // adjacent chunks of one stream merge up to this
	maxBatchEvents     = 128      // rows per group commit
	outputQueue        = 64       // chunks between the readers and the sink
)

// runTurn runs a session's pending turn and records how it ended. prep is
// what this job's provisioning prepared, nil when it did not provision.
func (r *Runner) runTurn(ctx context.Context, sess *store.Session, turn *store.Turn, prep *prepared, intr <-chan struct{}) {
	id := sess.ID
	dbctx := context.WithoutCancel(ctx)
	if ctx.Err() != nil {
		return // terminated (the store has it) or shutting down (the turn stays queued)
	}
	started, err := r.db.StartTurn(dbctx, id, turn.Number)
	if err != nil {
		r.log.Error("starting turn", "session", id, "turn", turn.Number, "err", err)
		return
	}
	if !started {
		return // no longer pending, e.g. terminated
	}
	r.appendStage(id, stageRuntimeStart, store.StageStarted, nil, "")
	began := time.Now()
	res, how := r.execTurn(ctx, sess, turn, prep, intr)
	metrics.TurnSeconds.WithLabelValues(turnOutcome(res, how)).Observe(time.Since(began).Seconds())
	if how == endedDetached {
		r.log.Info("shutdown: the turn's command runs on in its sprite; the next start takes it up", "session", id, "turn", turn.Number)
		return
	}
	if how == endedCancel && errors.Is(context.Cause(ctx), errShutdown) {
		if err := r.db.FailSession(dbctx, id, reasonShutdown); err != nil {
			r.log.Error("recording turn end", "session", id, "turn", turn.Number, "err", err)
		}
		r.log.Warn("turn killed by shutdown", "session", id, "turn", turn.Number)
		return
	}
	// Every output row is committed by now: a reader that sees the turn's
	// end has seen all of its output.
	if err := r.db.FinishTurn(dbctx, id, turn.Number, res); err != nil {
		r.log.Error("recording turn end", "session", id, "turn", turn.Number, "err", err)
	}
	attrs := []any{"session", id, "turn", turn.Number}
	if res.ExitCode != nil {
		attrs = append(attrs, "exit_code", *res.ExitCode)
	}
	if res.Error != "" {
		attrs = append(attrs, "error", res.Error)
	}
	r.log.Info("turn ended", attrs...)
}

// resumeTurn takes up a turn whose command a shutdown let go of, running
// on in a remote sprite: its output from where the last server stored it,
// then its end, as runTurn records it.
func (r *Runner) resumeTurn(ctx context.Context, sess *store.Session, dt *store.DetachedTurn, intr <-chan struct{}) {
	id := sess.ID
	dbctx := context.WithoutCancel(ctx)
	turn := &dt.Turn
	res, how := func() (store.TurnResult, ending) {
		sp, err := r.backend.Get(ctx, id, sprite.Options{})
		if err != nil {
			return store.TurnResult{Error: "Could not take up the turn after a restart: " + err.Error()}, endedItself
		}
		ra, ok := sp.(sprite.Reattacher)
		if !ok {
			return store.TurnResult{Error: "Could not take up the turn after a restart: the backend cannot"}, endedItself
		}
		used, err := r.db.OutputBytes(dbctx, id)
		if err != nil {
			return store.TurnResult{Error: "Could not read the session's output size: " + err.Error()}, endedItself
		}
		// What is left of the turn's timeout.
		timeout := time.Duration(turn.Timeout) * time.Second
		if timeout <= 0 {
			timeout = defaultTurnTimeout
		}
		if turn.StartedAt != nil {
			timeout = max(timeout-time.Since(*turn.StartedAt), time.Second)
		}
		return r.driveTurn(ctx, sess, turn, r.runtime(sess.Runtime), intr, used, timeout, func(stdout, stderr io.Writer) (sprite.Process, error) {
			return ra.Reattach(ctx, dt.ExecID, dt.StdoutSeen, dt.StderrSeen, stdout, stderr)
		})
	}()
	switch {
	case how == endedDetached:
		return // shut down again
	case how == endedCancel && errors.Is(context.Cause(ctx), errShutdown):
		if err := r.db.FailSession(dbctx, id, reasonShutdown); err != nil {
			r.log.Error("recording turn end", "session", id, "turn", turn.Number, "err", err)
		}
		return
	}
	if err := r.db.FinishTurn(dbctx, id, turn.Number, res); err != nil {
		r.log.Error("recording turn end", "session", id, "turn", turn.Number, "err", err)
	}
	r.log.Info("turn ended (taken up after a restart)", "session", id, "turn", turn.Number, "error", res.Error)
}

// turnOutcome labels a turn's duration: completed, failed, interrupted,
// timed out or killed (terminate, delete, shutdown).
func turnOutcome(res store.TurnResult, how ending) string {
	switch {
	case res.Interrupted:
		return "interrupted"
	case how == endedTimeout:
		return "timeout"
	case how == endedCancel:
		return "killed"
	case res.ExitCode != nil && *res.ExitCode == 0 && res.Error == "":
		return "completed"
	}
	return "failed"
}

// execTurn runs the runtime's command for one turn, streaming its output
// into the log, and returns the turn's result.
func (r *Runner) execTurn(ctx context.Context, sess *store.Session, turn *store.Turn, prep *prepared, intr <-chan struct{}) (store.TurnResult, ending) {
	id := sess.ID
	rt := r.runtime(sess.Runtime)
	if pkg := r.pin(rt); pkg != nil && r.mode != SandboxSprites {
		// Normally a stat: installed at provisioning. Reinstalled if the
		// shared cache was cleaned since.
		if _, err := r.inst.Ensure(ctx, *pkg); err != nil {
			if ctx.Err() != nil {
				return store.TurnResult{Error: "terminated"}, endedCancel
			}
			return store.TurnResult{Error: "Failed to install runtime: " + err.Error()}, endedItself
		}
	}
	if prep == nil {
		var problem string
		if prep, problem = r.prepare(ctx, sess, rt); prep == nil {
			return store.TurnResult{Error: problem}, endedItself
		}
	}
	sp, env := prep.sp, prep.env
	prompt := turn.Prompt
	if turn.Number == 1 && sess.System != "" {
		prompt = sess.System + "\n\n" + prompt
	}
	used, err := r.db.OutputBytes(ctx, id)
	if err != nil {
		return store.TurnResult{Error: "Could not read the session's output size: " + err.Error()}, endedItself
	}
	select {
	case <-intr:
		return store.TurnResult{Interrupted: true}, endedInterrupt // before the runtime started: it never does
	default:
	}
	timeout := time.Duration(turn.Timeout) * time.Second
	if timeout <= 0 {
		timeout = defaultTurnTimeout
	}
	return r.driveTurn(ctx, sess, turn, rt, intr, used, timeout, func(stdout, stderr io.Writer) (sprite.Process, error) {
		return sp.Start(ctx, sprite.ExecRequest{
			Argv:   rt.Argv(sess, turn.Number),
			Dir:    sprite.HomeDir,
			Env:    envList(env),
			Stdin:  strings.NewReader(prompt),
			Stdout: stdout,
			Stderr: stderr,
		})
	})
}

// driveTurn starts a turn's command (start is given the writers of its
// output), stores its output as it comes, stops it when the turn must
// stop, and says how the turn ended. used is the session's output bytes
// stored before.
func (r *Runner) driveTurn(ctx context.Context, sess *store.Session, turn *store.Turn, rt runtimes.Runtime, intr <-chan struct{}, used int64,
	timeout time.Duration, start func(stdout, stderr io.Writer) (sprite.Process, error)) (store.TurnResult, ending) {
	id := sess.ID
	out := r.newOutput(id, turn.Number, used)
	go out.sink()
	var stdout io.Writer = out.writer("stdout")
	var tee *runtimes.LineTee
	stop := intr // an interrupt, or the budget running out mid-turn
	if p := rt.Parser(); p != nil {
		if sess.BudgetUSD != nil {
			var over <-chan struct{}
			p, over = r.watchBudget(ctx, sess, p)
			done := make(chan struct{})
			defer close(done)
			stop = either(done, intr, over)
		}
		tee = &runtimes.LineTee{W: stdout, P: p}
		stdout = tee
	}
	proc, err := start(stdout, out.writer("stderr"))
	if err != nil {
		out.close()
		if ctx.Err() != nil {
			return store.TurnResult{Error: "terminated"}, endedCancel // stopped before it could start
		}
		return store.TurnResult{Error: fmt.Sprintf("Could not start the %s runtime: %v", rt.Name(), err)}, endedItself
	}
	if rp, ok := proc.(sprite.Resumable); ok {
		// Recorded so that a shutdown can let go of it and the next
		// server take it up again (see resumeTurn).
		if err := r.db.SetTurnExec(context.WithoutCancel(ctx), id, turn.Number, rp.ID()); err != nil {
			r.log.Error("recording a turn's command", "session", id, "turn", turn.Number, "err", err)
		}
	}
	st, how, werr := r.supervise(ctx, proc, timeout, out.kill, stop)
	if how == endedDetached {
		out.close() // what was delivered is stored: the next server skips it
		outSeen, errSeen := proc.(sprite.Resumable).Detach()
		if err := r.db.DetachTurn(context.WithoutCancel(ctx), id, turn.Number, outSeen, errSeen); err != nil {
			r.log.Error("recording a detached turn", "session", id, "turn", turn.Number, "err", err)
		}
		return store.TurnResult{}, how
	}
	if st.Limit != "" && werr == nil {
		// Said where clients that print only output look, too.
		io.WriteString(out.writer("stderr"), "aod: "+st.Limit+"\n")
	}
	out.close() // the last rows are committed before the turn's end is
	var res store.TurnResult
	switch {
	case how == endedCancel:
		res.Error = "terminated"
	case how == endedInterrupt:
		code := st.Code
		res.ExitCode, res.Interrupted = &code, true
	case out.capHit:
		res.Error = fmt.Sprintf("output limit of %d bytes exceeded", out.limit)
	case out.storeErr != nil:
		res.Error = "Storing output failed: " + out.storeErr.Error()
	case how == endedTimeout:
		res.Error = fmt.Sprintf("turn timed out after %ds", int(timeout/time.Second))
	case werr != nil:
		res.Error = "The runtime's process failed: " + werr.Error()
	case st.Limit != "":
		code := st.Code
		res.ExitCode, res.Error = &code, st.Limit
	default:
		code := st.Code
		res.ExitCode = &code
	}
	if tee != nil {
		tee.Close() // the readers are done: Wait has returned
		rep := tee.P.Report()
		res.Usage = r.recordReport(context.WithoutCancel(ctx), sess, turn.Number, rep)
		res.Result = capResult(rep.Result)
	}
	return res, how
}

// prepare looks the session's sprite up and assembles its processes'
// environment (reading and decrypting the session's secrets), for a turn
// whose job did not provision; on failure it says why the turn fails.
func (r *Runner) prepare(ctx context.Context, sess *store.Session, rt runtimes.Runtime) (*prepared, string) {
	environment, err := r.db.SessionEnvironment(context.WithoutCancel(ctx), sess.ID)
	if err != nil {
		return nil, "Failed to prepare the environment: " + err.Error()
	}
	sp, err := r.backend.Get(ctx, sess.ID, r.spriteOpts(sess, rt, environment))
	if errors.Is(err, sprite.ErrNotFound) {
		return nil, "Sprite not found: " + sess.ID
	}
	if err != nil {
		return nil, "Sprite unavailable: " + err.Error()
	}
	env, _, err := r.sessionEnv(context.WithoutCancel(ctx), sess, sp, rt)
	if err != nil {
		return nil, "Failed to prepare the environment: " + err.Error()
	}
	return &prepared{sp: sp, env: env}, ""
}

// budgetParser passes a turn's output lines to the runtime's parser and,
// after each, checks what the turn has cost so far (where the CLI reports
// usage as it goes, e.g. opencode's steps) against what the session's
// budget leaves; over it, the turn is stopped as an interrupt.
type budgetParser struct {
	runtimes.Parser
	runtime, model string
	left           float64 // the budget less what earlier turns cost
	over           chan struct{}
	once           sync.Once
}

func (b *budgetParser) Line(line []byte) {
	b.Parser.Line(line)
	rep := b.Parser.Report()
	if rep.Usage == nil || rep.Cumulative {
		return // nothing yet, or a conversation's total (codex): the turn's end decides
	}
	if c, _ := rep.Usage.Cost(b.runtime, b.model); c != nil && *c >= b.left {
		b.once.Do(func() { close(b.over) })
	}
}

// watchBudget wraps p to stop the turn once the session's budget is spent;
// the channel closes then.
func (r *Runner) watchBudget(ctx context.Context, sess *store.Session, p runtimes.Parser) (runtimes.Parser, <-chan struct{}) {
	spent, err := r.db.SessionSpent(ctx, sess.ID)
	if err != nil {
		r.log.Error("reading a session's spending", "session", sess.ID, "err", err)
	}
	b := &budgetParser{Parser: p, runtime: sess.Runtime, model: sess.Model, left: *sess.BudgetUSD - spent, over: make(chan struct{})}
	return b, b.over
}

// either is closed when a or b is (until done is).
func either(done, a, b <-chan struct{}) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		select {
		case <-a:
		case <-b:
		case <-done:
			return
		}
		close(c)
	}()
	return c
}

// maxResult bounds the answer a turn keeps; the whole of it is in the
// output anyway.
const maxResult = 64 << 10

// capResult is a result cut to maxResult bytes (at a character boundary).
func capResult(s *string) *string {
	if s == nil || len(*s) <= maxResult {
		return s
	}
	c := (*s)[:runeCut(*s, maxResult)]
	return &c
}

// recordReport keeps what a turn's output said: the CLI's conversation id
// (for resuming) and the turn's usage, returned as JSON for the turn row.
func (r *Runner) recordReport(ctx context.Context, sess *store.Session, turn int, rep runtimes.Report) json.RawMessage {
	if rep.SessionID != "" && rep.SessionID != sess.RuntimeSessionID {
		if err := r.db.SetRuntimeSessionID(ctx, sess.ID, rep.SessionID); err != nil {
			r.log.Error("recording the runtime's session id", "session", sess.ID, "err", err)
		} else {
			sess.RuntimeSessionID = rep.SessionID
		}
	}
	u := rep.Usage
	if u == nil {
		return nil
	}
	if rep.Cumulative {
		// The CLI reports the conversation's total: this turn's share is
		// what it added to the total the last turn recorded.
		total := *u
		own := total
		if prev := r.previousThreadUsage(ctx, sess.ID, turn); prev != nil {
			own = *total.Minus(prev)
		}
		own.Thread = &total
		u = &own
	}
	b, err := json.Marshal(u)
	if err != nil {
		return nil
	}
	return b
}

// previousThreadUsage is the conversation total the latest earlier turn
// recorded, nil when none did.
func (r *Runner) previousThreadUsage(ctx context.Context, id string, turn int) *runtimes.Usage {
	turns, err := r.db.ListTurns(ctx, "", id)
	if err != nil {
		r.log.Error("reading earlier turns' usage", "session", id, "err", err)
		return nil
	}
	var prev *runtimes.Usage
	for _, t := range turns {
		if t.Number >= turn || len(t.Usage) == 0 {
			continue
		}
		var u runtimes.Usage
		if json.Unmarshal(t.Usage, &u) == nil && u.Thread != nil {
			prev = u.Thread // turns come in order: the last one wins
		}
	}
	return prev
}

// ending says what ended a command.
type ending int

const (
	endedItself    ending = iota
	endedTimeout          // our deadline: TERM, grace, KILL
	endedCancel           // the job was cancelled (terminate, delete, shutdown): KILL at once
	endedKill             // the caller asked (output cap, storage failure): KILL at once
	endedInterrupt        // an interrupt: TERM, grace, KILL; the session goes on
	endedDetached         // a shutdown let go of a command that runs on (see resumeTurn)
)

// supervise waits for a command while enforcing the timeout (0 = none),
// the job's cancellation and the caller's kill channel.
func (r *Runner) supervise(ctx context.Context, p sprite.Process, timeout time.Duration, kill, intr <-chan struct{}) (sprite.ExitStatus, ending, error) {
	exited := make(chan struct{})
	done := make(chan struct{})
	how := endedItself
	go func() {
		defer close(done)
		var deadline, grace <-chan time.Time
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		cancelled := ctx.Done()
		for {
			select {
			case <-exited:
				return
			case <-cancelled:
				cancelled = nil
				if rp, ok := p.(sprite.Resumable); ok && how == endedItself && errors.Is(context.Cause(ctx), errShutdown) {
					// The command runs on; the next server takes it up.
					how = endedDetached
					rp.Detach() // Wait returns once it has
					continue
				}
				if how == endedItself {
					how = endedCancel
				}
				p.Signal(syscall.SIGKILL)
			case <-kill:
				kill = nil
				if how == endedItself {
					how = endedKill
				}
				p.Signal(syscall.SIGKILL)
			case <-deadline:
				deadline = nil
				if how == endedItself {
					how = endedTimeout
				}
				p.Signal(syscall.SIGTERM)
				g := time.NewTimer(r.cfg.KillGrace)
				defer g.Stop()
				grace = g.C
			case <-intr:
				intr = nil
				if how == endedItself {
					how = endedInterrupt
				}
				p.Signal(syscall.SIGTERM)
				if grace == nil {
					g := time.NewTimer(r.cfg.KillGrace)
					defer g.Stop()
					grace = g.C
				}
			case <-grace:
				grace = nil
				p.Signal(syscall.SIGKILL)
			}
		}
	}()
	st, err := p.Wait()
	close(exited)
	<-done
	return st, how, err
}

// output carries one turn's output from the readers to the log. Readers
// push chunks into a bounded queue (a full queue blocks them: backpressure,
// never dropped bytes); one sink takes whatever is queued and commits it
// as one batch, so a chunk is stored as soon as the previous commit ends.
type output struct {
	r        *Runner
	id       string
	turn     int
	limit    int64
	ch       chan chunk
	kill     chan struct{}
	killOnce sync.Once
	sinkDone chan struct{}
	writers  []*streamWriter

	mu     sync.Mutex
	used   int64 // bytes stored for the session, this turn and earlier ones
	capHit bool

	storeErr error // set by the sink, read after sinkDone
}

type chunk struct{ stream, data string }

// newOutput starts a turn's output pipeline; used is what the session has
// stored in earlier turns (the cap is per session).
func (r *Runner) newOutput(id string, turn int, used int64) *output {
	return &output{
		r: r, id: id, turn: turn, limit: r.cfg.OutputLimit, used: used,
		ch: make(chan chunk, outputQueue), kill: make(chan struct{}), sinkDone: make(chan struct{}),
	}
}

func (o *output) stop() { o.killOnce.Do(func() { close(o.kill) }) }

func (o *output) writer(stream string) *streamWriter {
	w := &streamWriter{o: o, stream: stream}
	o.writers = append(o.writers, w)
	return w
}

// emit counts a chunk against the session's cap and queues it. The chunk
// that crosses the cap is kept up to the cap, then the command is killed.
func (o *output) emit(stream string, data []byte) {
	if len(data) == 0 {
		return
	}
	s := cmdout.Text(data)
	o.mu.Lock()
	if o.capHit {
		o.mu.Unlock()
		return
	}
	crossed := false
	if room := o.limit - o.used; int64(len(s)) > room {
		s = s[:runeCut(s, room)]
		o.capHit, crossed = true, true
	}
	o.used += int64(len(s))
	o.mu.Unlock()
	if s != "" {
		o.ch <- chunk{stream, s}
	}
	if crossed {
		o.stop()
	}
}

// close delivers the held-back bytes, ends the queue and waits for the
// sink's last commit. Call it once no more writes can come.
func (o *output) close() {
	for _, w := range o.writers {
		if len(w.held) > 0 {
			o.emit(w.stream, w.held) // an incomplete sequence at EOF: U+FFFD each
			w.held = nil
		}
	}
	close(o.ch)
	<-o.sinkDone
}

func (o *output) sink() {
	defer close(o.sinkDone)
	for c := range o.ch {
		batch := []store.Event{o.event(c)}
	drain:
		for len(batch) < maxBatchEvents {
			select {
			case c, ok := <-o.ch:
				if !ok {
					break drain
				}
				last := &batch[len(batch)-1]
				if last.Stream == c.stream && len(last.Data)+len(c.data) <= maxEventBytes {
					last.Data += c.data
				} else {
					batch = append(batch, o.event(c))
				}
			default:
				break drain // commit what is here now; never wait for more
			}
		}
		if o.storeErr != nil {
			continue // keep draining so the readers never block
		}
		if err := o.r.db.AppendEvents(context.Background(), o.id, batch); err != nil {
			o.storeErr = err
			o.r.log.Error("storing output", "session", o.id, "turn", o.turn, "err", err)
			o.stop()
		}
	}
}

func (o *output) event(c chunk) store.Event {
	return store.Event{Turn: o.turn, Kind: store.KindOutput, Stream: c.stream, Data: c.data}
}

// streamWriter receives one stream's reads. An incomplete UTF-8 sequence
// at the end of a read is held back and joined with the next read, so a
// character split between reads is stored whole.
type streamWriter struct {
	o      *output
	stream string
	held   []byte
}

func (w *streamWriter) Write(p []byte) (int, error) {
	data := p
	if len(w.held) > 0 {
		data = append(w.held, p...)
		w.held = nil
	}
	if cut := incompleteTail(data); cut < len(data) {
		w.held = append([]byte(nil), data[cut:]...)
		data = data[:cut]
	}
	w.o.emit(w.stream, data)
	return len(p), nil
}

// incompleteTail returns where a trailing, possibly incomplete UTF-8
// sequence starts, or len(b) when b ends on a complete (or invalid) one.
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}

// runeCut is the longest prefix length of s of at most n bytes that ends
// on a character boundary.
func runeCut(s string, n int64) int {
	if n >= int64(len(s)) {
		return len(s)
	}
	if n <= 0 {
		return 0
	}
	i := int(n)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
