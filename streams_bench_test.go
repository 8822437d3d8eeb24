package main

// Black-box benchmarks of the session event stream (GET /sessions/{id}/stream)
// against the real `aod serve` binary run as a child process (startServer in
// crash_test.go), with --sandbox none so sprite start-up plays no part. Each
// one measures a whole scenario once, so run them with -benchtime 1x:
//
//	go test -run '^$' -bench 'BenchmarkStreamFanout|BenchmarkIdleStreams|BenchmarkStalledReaders' -benchtime 1x .
//
// BenchmarkStreamFanout: one session prints 100 timestamped lines a second;
// latency (arrival − the line's timestamp) over all deliveries to 1, then
// 1,000 concurrent watchers.
// BenchmarkIdleStreams: the server's RSS idle, then with 10,000 open streams
// on quiet running sessions.
// BenchmarkStalledReaders: replay time and API latency with and without 200
// readers stalled on tiny receive windows while a session prints 50 MB, and
// the server's RSS growth meanwhile.
//
// The benchmark process and the server share the machine, so client-side
// CPU (1,000 readers parsing frames) is part of what the figures show.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit/apitest"
)

// benchPatience bounds every wait of these benchmarks: they fail rather
// than hang.
const benchPatience = 5 * time.Minute

// rssCeiling stops a benchmark whose server grows past it, before it takes
// the machine down with it.
const rssCeiling = 16 << 30

// benchServer is a child `aod serve` with a user's token and shell agent.
type benchServer struct {
	*serverProc
	addr  string // host:port
	token string
	agent string
}

// startBenchServer starts `aod serve --sandbox none` with extra flags on a
// fresh data dir, creates a token (with the CLI, as an operator would) and
// a shell agent.
func startBenchServer(b *testing.B, extra ...string) *benchServer {
	b.Helper()
	raiseNoFile(b)
	dataDir := filepath.Join(b.TempDir(), "data")
	args := append([]string{"--sandbox", "none", "--shutdown-grace", "1s"}, extra...)
	srv := startServer(b, dataDir, args...)
	out, err := exec.Command(aodBinary(b), "--data-dir", dataDir, "token", "create", "--user", "bench").Output()
	if err != nil {
		b.Fatalf("token create: %v", err)
	}
	s := &benchServer{serverProc: srv, addr: strings.TrimPrefix(srv.base, "http://"), token: lastLine(string(out))}
	s.agent = srv.api.ShellAgent(s.token)
	return s
}

// raiseNoFile lifts the soft open-files limit to the hard one; set
// explicitly, it is also what the server child inherits.
func raiseNoFile(b *testing.B) {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("getrlimit: %v", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("setrlimit: %v", err)
	}
}

// streamLimitFlags lifts the server's stream limits to n.
func streamLimitFlags(n int) []string {
	return []string{"--max-streams-per-user", strconv.Itoa(n), "--max-streams", strconv.Itoa(n)}
}

// rss is the server's resident set size in bytes (VmRSS).
func (s *benchServer) rss(b *testing.B) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("read server status: %v", err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				b.Fatalf("VmRSS %q: %v", l, err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in the server's status")
	return 0
}

// cpuTime is the CPU time the server process has used (user + system).
func (s *benchServer) cpuTime(b *testing.B) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("read server stat: %v", err)
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// selfCPUTime is the CPU time this process has used (user + system).
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAvg is /proc/loadavg's one-minute figure, for the log: the machine
// may be busy with more than this benchmark.
func loadAvg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func (s *benchServer) startSession(prompt string) string {
	return s.api.StartSession(s.token, apitest.SessionBody(s.agent, prompt, "timeout", 600))
}

// waitStatus polls the session until its status is one of want.
func (s *benchServer) waitStatus(b *testing.B, id string, within time.Duration, want ...string) string {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		st := fmt.Sprint(s.api.Session(s.token, id)["status"])
		if slices.Contains(want, st) {
			return st
		}
		if time.Now().After(deadline) {
			b.Fatalf("session %s still %s after %s, want %v; server log:\n%s", id, st, within, want, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *benchServer) terminate(id string) {
	s.api.Do("POST", "/sessions/"+id+"/terminate", s.token, nil)
}

// --- SSE parsing, kept cheap: a thousand readers share the server's CPU ---

var (
	dataPrefix = []byte("data: ")
	idPrefix   = []byte("id: ")
	typeKey    = []byte(`"type"`)
	tickMark   = []byte("tick=")
)

// readLine reads one line, however long.
func readLine(br *bufio.Reader, buf []byte) (line, nbuf []byte, err error) {
	line, err = br.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, buf, err
	}
	buf = append(buf[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = br.ReadSlice('\n')
		buf = append(buf, line...)
	}
	return buf, buf, err
}

// frameType is the "type" of a `data: {...}` line: the first "type" key,
// which the server writes first.
func frameType(line []byte) string {
	i := bytes.Index(line, typeKey)
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(line[i+len(typeKey):], " :")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	rest = rest[1:]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return string(rest[:j])
	}
	return ""
}

func terminalType(t string) bool {
	return t == "exit" || t == "error" || t == "terminated" || t == "stale"
}

// openRawStream opens a session's stream on its own TCP connection, with
// SO_RCVBUF set before connecting when rcvbuf > 0, and reads the response
// head and frames until the `start` frame, so the stream is known to be
// established. The caller owns the connection.
func openRawStream(addr, token, id string, rcvbuf, bufSize int) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, *bufio.Reader, error) { conn.Close(); return nil, nil, err }
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /sessions/%s/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", id, addr, token); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(conn, bufSize)
	status, err := br.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("status line: %w", err))
	}
	if f := strings.Fields(status); len(f) < 2 || f[1] != "200" {
		rest, _ := io.ReadAll(io.LimitReader(br, 512))
		return fail(fmt.Errorf("status %q: %s", strings.TrimSpace(status), rest))
	}
	var buf []byte
	for {
		var line []byte
		line, buf, err = readLine(br, buf)
		if err != nil {
			return fail(fmt.Errorf("before the start frame: %w", err))
		}
		// The body may be chunked; a data line is whole inside a chunk
		// here, and chunk-size lines never start with "data: ".
		if bytes.HasPrefix(line, dataPrefix) && frameType(line) == "start" {
			break
		}
	}
	conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// --- P3a: fan-out latency ---

// tickerScript prints `tick=<µs since the epoch>/<n>` lines at rate per
// second for d, from one bash process (no fork per line): the timestamp is
// taken right before the line is written, and the pace follows an absolute
// schedule, so it does not drift.
func tickerScript(rate int, d time.Duration) string {
	return fmt.Sprintf(`exec {z}<> <(:)
step=%d; n=0; total=%d
next=${EPOCHREALTIME//[.,]/}
while (( n < total )); do
  printf 'tick=%%s/%%d\n' "${EPOCHREALTIME//[.,]/}" "$n"
  n=$((n+1)); next=$((next+step))
  d=$((next-${EPOCHREALTIME//[.,]/}))
  if (( d > 999999 )); then d=999999; fi
  if (( d > 0 )); then printf -v t '0.%%06d' "$d"; read -t "$t" -u "$z" || :; fi
done
`, int(time.Second/time.Microsecond)/rate, rate*int(d/time.Second))
}

// watcher is one fan-out reader: the timestamps of the lines it got and
// each one's latency.
type watcher struct {
	trackID bool   // remember the last event id (one watcher does)
	lastID  string // the last id: seen
	ts      []int64
	lat     []int32 // µs
}

// run reads the stream from lastID, calling connected at the start frame
// and caughtUp at the first line stamped at or after *end (once set); it
// keeps reading, so the load stays, until ctx ends.
func (w *watcher) run(ctx context.Context, client *http.Client, url, token, lastID string, end *atomic.Int64, connected, caughtUp func()) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("status %d: %s", res.StatusCode, body)
	}
	br := bufio.NewReaderSize(res.Body, 16<<10)
	var buf []byte
	started := false
	for {
		var line []byte
		line, buf, err = readLine(br, buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch {
		case w.trackID && bytes.HasPrefix(line, idPrefix):
			w.lastID = string(bytes.TrimSpace(line[len(idPrefix):]))
		case bytes.HasPrefix(line, dataPrefix):
			if !started {
				if frameType(line) == "start" {
					started = true
					connected()
				}
				continue
			}
			if !bytes.Contains(line, tickMark) {
				if t := frameType(line); terminalType(t) {
					return fmt.Errorf("stream ended with %s", t)
				}
				continue
			}
			now := time.Now().UnixMicro()
			e := end.Load()
			for rest := line; ; {
				i := bytes.Index(rest, tickMark)
				if i < 0 {
					break
				}
				rest = rest[i+len(tickMark):]
				var ts int64
				j := 0
				for ; j < len(rest) && rest[j] >= '0' && rest[j] <= '9'; j++ {
					ts = ts*10 + int64(rest[j]-'0')
				}
				rest = rest[j:]
				if e != 0 && ts >= e {
					caughtUp()
					continue
				}
				w.ts = append(w.ts, ts)
				w.lat = append(w.lat, int32(min(now-ts, 1<<31-1)))
			}
		}
	}
}

type fanoutResult struct {
	watchers   int
	failed     int
	firstErr   error
	connect    time.Duration // time to connect them all
	lines      int           // distinct lines stamped inside the window
	deliveries int           // line deliveries inside the window
	missing    int           // watchers × lines − deliveries
	p50, p99   time.Duration
	max        time.Duration
	lastID     string
	// CPU used during the window, in cores: the server's (its child
	// sessions not included) and this process's (the watchers').
	serverCPU, clientCPU float64
}

// fanoutRound connects n watchers to the session's stream (resuming after
// lastID), waits until all are connected plus a second, and measures the
// latency of every line stamped in the following window to every watcher.
// Lines stamped in the window may arrive until the drain deadline.
func (s *benchServer) fanoutRound(b *testing.B, id string, n int, lastID string, window time.Duration) fanoutResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchPatience)
	defer cancel()
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := s.base + "/sessions/" + id + "/stream"

	var end atomic.Int64
	var connWG, caughtWG, doneWG sync.WaitGroup
	connWG.Add(n)
	caughtWG.Add(n)
	doneWG.Add(n)
	ws := make([]*watcher, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 64) // connections being set up at once
	start := time.Now()
	for i := range n {
		w := &watcher{trackID: i == 0}
		ws[i] = w
		go func() {
			defer doneWG.Done()
			sem <- struct{}{}
			var once sync.Once
			connected := func() { once.Do(func() { <-sem; connWG.Done() }) }
			caughtUp := sync.OnceFunc(caughtWG.Done)
			defer connected()
			defer caughtUp()
			errs[i] = w.run(ctx, client, url, s.token, lastID, &end, connected, caughtUp)
		}()
	}
	if !waitGroup(&connWG, benchPatience) {
		b.Fatalf("%d watchers not connected after %s", n, benchPatience)
	}
	r := fanoutResult{watchers: n, connect: time.Since(start)}
	t0 := time.Now().Add(time.Second)
	t1 := t0.Add(window)
	end.Store(t1.UnixMicro())
	time.Sleep(time.Until(t0))
	srv0, self0 := s.cpuTime(b), selfCPUTime()
	time.Sleep(time.Until(t1))
	r.serverCPU = float64(s.cpuTime(b)-srv0) / float64(window)
	r.clientCPU = float64(selfCPUTime()-self0) / float64(window)
	// Lines sent inside the window may still be on their way: wait until
	// every watcher has one stamped after it (or gave up), bounded.
	waitGroup(&caughtWG, time.Minute)
	cancel()
	if !waitGroup(&doneWG, time.Minute) {
		b.Fatalf("watchers still reading a minute after cancel")
	}

	lo, hi := t0.UnixMicro(), t1.UnixMicro()
	lines := map[int64]struct{}{}
	var lats []int32
	for i, w := range ws {
		if errs[i] != nil {
			r.failed++
			if r.firstErr == nil {
				r.firstErr = errs[i]
			}
		}
		for k, ts := range w.ts {
			if ts >= lo && ts < hi {
				lines[ts] = struct{}{}
				lats = append(lats, w.lat[k])
			}
		}
	}
	r.lastID = ws[0].lastID
	r.lines, r.deliveries = len(lines), len(lats)
	r.missing = n*len(lines) - len(lats)
	if len(lats) > 0 {
		slices.Sort(lats)
		us := func(v int32) time.Duration { return time.Duration(v) * time.Microsecond }
		r.p50 = us(lats[len(lats)*50/100])
		r.p99 = us(lats[(len(lats)*99+99)/100-1])
		r.max = us(lats[len(lats)-1])
	}
	return r
}

// waitGroup waits for wg for at most d and reports whether it finished.
func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkStreamFanout (P3a): one session prints 100 timestamped lines a
// second; 1 watcher, then 1,000 concurrent watchers (each on its own
// connection) read its stream. Latency is each line's arrival at a watcher
// minus the time stamped in it, over every delivery of the lines stamped in
// a 10 s window that starts a second after the last watcher connected.
func BenchmarkStreamFanout(b *testing.B) {
	const rate, many = 100, 1000
	const window = 10 * time.Second
	load := loadAvg()
	s := startBenchServer(b, append([]string{"--max-running", "4"}, streamLimitFlags(5*many)...)...)
	id := s.startSession(tickerScript(rate, 300*time.Second))
	defer s.terminate(id)
	s.waitStatus(b, id, benchPatience, "running")

	one := s.fanoutRound(b, id, 1, "", window)
	all := s.fanoutRound(b, id, many, one.lastID, window)
	b.Logf("load average before: %s", load)
	for _, r := range []fanoutResult{one, all} {
		b.Logf("%5d watchers: %d lines in %s (%.0f/s), %d deliveries (%d missing), latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; CPU server %.0f%%, watchers %.0f%%; connected in %s; %d failed %v",
			r.watchers, r.lines, window, float64(r.lines)/window.Seconds(), r.deliveries, r.missing,
			ms(r.p50), ms(r.p99), ms(r.max), 100*r.serverCPU, 100*r.clientCPU, r.connect.Round(time.Millisecond), r.failed, r.firstErr)
		if r.failed > 0 || r.lines == 0 {
			b.Errorf("%d watchers: %d failed (first: %v), %d lines", r.watchers, r.failed, r.firstErr, r.lines)
		}
	}
	b.ReportMetric(ms(one.p50), "p50-ms-1")
	b.ReportMetric(ms(one.p99), "p99-ms-1")
	b.ReportMetric(ms(all.p50), "p50-ms")
	b.ReportMetric(ms(all.p99), "p99-ms")
	b.ReportMetric(ms(all.max), "max-ms")
	b.ReportMetric(float64(all.deliveries), "deliveries")
	b.ReportMetric(float64(all.missing), "missing")
	b.ReportMetric(float64(all.lines)/window.Seconds(), "lines/s")
	b.ReportMetric(100*all.serverCPU, "server-cpu-%")
	b.ReportMetric(100*all.clientCPU, "watchers-cpu-%")
}

// --- P3b: memory of idle streams ---

// BenchmarkIdleStreams (P3b): the server's RSS with a few quiet running
// sessions, then with 10,000 streams open on them, each on its own TCP
// connection and read up to its start frame.
func BenchmarkIdleStreams(b *testing.B) {
	const sessions, streams = 4, 10000
	b.Logf("load average before: %s", loadAvg())
	s := startBenchServer(b, append([]string{"--max-running", "8"}, streamLimitFlags(2*streams)...)...)
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = s.startSession("sleep 600")
	}
	for _, id := range ids {
		defer s.terminate(id)
		s.waitStatus(b, id, benchPatience, "running")
	}
	time.Sleep(2 * time.Second)
	idle := s.rss(b)

	conns := make([]net.Conn, streams)
	errs := make([]error, streams)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100) // below the listen backlog
	start := time.Now()
	for i := range streams {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			conns[i], _, errs[i] = openRawStream(s.addr, s.token, ids[i%sessions], 0, 1024)
		}()
	}
	if !waitGroup(&wg, benchPatience) {
		b.Fatalf("streams not open after %s", benchPatience)
	}
	opened := time.Since(start)
	open, failed := 0, 0
	var firstErr error
	for i := range streams {
		if errs[i] == nil {
			open++
		} else if failed++; firstErr == nil {
			firstErr = errs[i]
		}
	}
	time.Sleep(2 * time.Second)
	full := s.rss(b)

	idleMB, fullMB := float64(idle)/(1<<20), float64(full)/(1<<20)
	perStream := 0.0
	if open > 0 {
		perStream = float64(full-idle) / 1024 / float64(open)
	}
	b.Logf("RSS idle %.1f MB, with %d streams %.1f MB: +%.1f MB, %.1f KB per stream; opened in %s; %d failed %v",
		idleMB, open, fullMB, fullMB-idleMB, perStream, opened.Round(time.Millisecond), failed, firstErr)
	if open < streams {
		b.Errorf("only %d of %d streams opened (first error: %v)", open, streams, firstErr)
	}
	b.ReportMetric(idleMB, "rss-idle-mb")
	b.ReportMetric(fullMB, "rss-10k-mb")
	b.ReportMetric(fullMB-idleMB, "delta-mb")
	b.ReportMetric(perStream, "kb-per-stream")
	b.ReportMetric(float64(open), "streams-open")
}

// --- P3c: stalled readers ---

// printScript prints ~50 MB: 657,895 lines of 76 base64 characters.
const printScript = "head -c 37500000 /dev/zero | base64 -w 76"

// replayResult is a fast reader's replay of a whole stream.
type replayResult struct {
	took    time.Duration
	bytes   int64 // bytes of data: lines
	outputs int   // output events
	last    string
}

// fastReplay reads the session's stream from the start to its terminal
// event as fast as it can.
func (s *benchServer) fastReplay(ctx context.Context, id string) (replayResult, error) {
	var r replayResult
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/sessions/"+id+"/stream", nil)
	if err != nil {
		return r, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	res, err := client.Do(req)
	if err != nil {
		return r, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return r, fmt.Errorf("replay: status %d", res.StatusCode)
	}
	br := bufio.NewReaderSize(res.Body, 1<<20)
	var buf []byte
	for {
		var line []byte
		line, buf, err = readLine(br, buf)
		if err != nil {
			return r, fmt.Errorf("replay after %d bytes, %d outputs: %w", r.bytes, r.outputs, err)
		}
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		r.bytes += int64(len(line))
		switch t := frameType(line); {
		case t == "output":
			r.outputs++
		case terminalType(t):
			r.last = t
			r.took = time.Since(start)
			return r, nil
		}
	}
}

// apiLatencies sends n sequential GET /sessions/{id} (one kept-alive
// connection) and returns their durations.
func (s *benchServer) apiLatencies(ctx context.Context, id string, n int) ([]time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	var out []time.Duration
	for range n {
		req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/sessions/"+id, nil)
		if err != nil {
			return out, err
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
		t := time.Now()
		res, err := client.Do(req)
		if err != nil {
			return out, err
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil {
			return out, err
		}
		if res.StatusCode != http.StatusOK {
			return out, fmt.Errorf("GET /sessions/%s: status %d", id, res.StatusCode)
		}
		out = append(out, time.Since(t))
	}
	return out, nil
}

// replayWithAPI runs fastReplay and, alongside, apiLatencies.
func (s *benchServer) replayWithAPI(ctx context.Context, id string, n int) (replayResult, []time.Duration, error) {
	var api []time.Duration
	var apiErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		api, apiErr = s.apiLatencies(ctx, id, n)
	}()
	r, err := s.fastReplay(ctx, id)
	<-done
	if err != nil {
		return r, api, fmt.Errorf("replay: %w", err)
	}
	if apiErr != nil {
		return r, api, fmt.Errorf("API: %w", apiErr)
	}
	return r, api, nil
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[(len(ds)*99+99)/100-1]
}

// rssSampler reads the server's RSS every 100 ms until stopped, keeping
// the peak; past rssCeiling it calls over once.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func (s *benchServer) sampleRSS(b *testing.B, over func()) *rssSampler {
	r := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	r.peak.Store(s.rss(b))
	pid := s.cmd.Process.Pid
	go func() {
		defer close(r.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		fired := false
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(raw), "\n") {
				if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					v := kb << 10
					if v > r.peak.Load() {
						r.peak.Store(v)
					}
					if v > rssCeiling && !fired && over != nil {
						fired = true
						over()
					}
				}
			}
		}
	}()
	return r
}

func (r *rssSampler) Stop() int64 {
	close(r.stop)
	<-r.done
	return r.peak.Load()
}

// stalledReader is a stream reader on a 4 KiB receive buffer that reads
// one byte a second.
type stalledReader struct {
	conn  net.Conn
	alive atomic.Bool
}

func (r *stalledReader) trickle(stop <-chan struct{}) {
	r.alive.Store(true)
	go func() {
		var one [1]byte
		for {
			if _, err := r.conn.Read(one[:]); err != nil {
				r.alive.Store(false)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
}

// BenchmarkStalledReaders (P3c): a session prints ~50 MB. Baseline, on one
// server: the session prints with no reader, then a fast reader replays the
// stream from the start while 200 sequential GET /sessions/{id} measure the
// API. Stalled, on a fresh server: 200 readers with a 4 KiB receive buffer
// reading a byte a second are connected before the session prints; the
// server's RSS is sampled from then until the fast replay (again with the
// API measured alongside) is done, the stalled readers still connected.
func BenchmarkStalledReaders(b *testing.B) {
	const stalledN, apiN = 200, 200
	ctx, cancel := context.WithTimeout(context.Background(), benchPatience)
	defer cancel()
	b.Logf("load average before: %s", loadAvg())

	// Phase A: baseline.
	a := startBenchServer(b)
	rssA := a.rss(b)
	samplerA := a.sampleRSS(b, nil)
	startA := time.Now()
	idA := a.startSession(printScript)
	if st := a.waitStatus(b, idA, benchPatience, "completed", "failed", "terminated"); st != "completed" {
		b.Fatalf("baseline session %s; server log:\n%s", st, a.logs)
	}
	printA := time.Since(startA)
	apiQuiet, err := a.apiLatencies(ctx, idA, apiN)
	if err != nil {
		b.Fatalf("baseline API: %v", err)
	}
	replayA, apiA, err := a.replayWithAPI(ctx, idA, apiN)
	if err != nil {
		b.Fatalf("baseline: %v", err)
	}
	peakA := samplerA.Stop()
	b.Logf("baseline: printed in %s, RSS %.1f → peak %.1f MB; replay %.1f MB (%d outputs, %s) in %.0f ms; API p99 %.2f ms during it (%.2f ms with nothing else)",
		printA.Round(time.Millisecond), float64(rssA)/(1<<20), float64(peakA)/(1<<20),
		float64(replayA.bytes)/1e6, replayA.outputs, replayA.last, ms(replayA.took), ms(p99(apiA)), ms(p99(apiQuiet)))
	if replayA.bytes < 50e6 || replayA.last != "exit" {
		b.Fatalf("baseline replay: %d bytes ending in %q, want ≥ 50 MB and exit", replayA.bytes, replayA.last)
	}

	// Phase B: a fresh server; the session waits for a flag file before it
	// prints, so the stalled readers are connected first.
	s := startBenchServer(b)
	flag := filepath.Join(b.TempDir(), "go")
	id := s.startSession(fmt.Sprintf("while [ ! -e %q ]; do sleep 0.05; done\n%s", flag, printScript))
	s.waitStatus(b, id, benchPatience, "running")
	readers := make([]*stalledReader, stalledN)
	stop := make(chan struct{})
	var closeOnce sync.Once
	closeReaders := func() {
		closeOnce.Do(func() {
			close(stop)
			for _, r := range readers {
				if r != nil {
					r.conn.Close()
				}
			}
		})
	}
	defer closeReaders()
	for i := range readers {
		conn, _, err := openRawStream(s.addr, s.token, id, 4096, 4096)
		if err != nil {
			b.Fatalf("stalled reader %d: %v", i, err)
		}
		readers[i] = &stalledReader{conn: conn}
		readers[i].trickle(stop)
	}
	time.Sleep(500 * time.Millisecond)
	before := s.rss(b)
	var overRSS atomic.Bool
	sampler := s.sampleRSS(b, func() { overRSS.Store(true); closeReaders() })
	startB := time.Now()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if st := s.waitStatus(b, id, benchPatience, "completed", "failed", "terminated"); st != "completed" {
		b.Fatalf("stalled session %s; server log:\n%s", st, s.logs)
	}
	printB := time.Since(startB)
	replayB, apiB, err := s.replayWithAPI(ctx, id, apiN)
	peak := sampler.Stop()
	alive := 0
	for _, r := range readers {
		if r.alive.Load() {
			alive++
		}
	}
	closeReaders()
	if overRSS.Load() {
		b.Fatalf("server RSS passed %d GiB (peak %.0f MB); stalled readers closed", rssCeiling>>30, float64(peak)/(1<<20))
	}
	if err != nil {
		b.Fatalf("with stalled readers: %v", err)
	}
	growth := float64(peak-before) / (1 << 20)
	b.Logf("stalled: %d readers (%d still connected at the end), printed in %s, RSS %.1f → peak %.1f MB (+%.1f MB); replay %.1f MB in %.0f ms; API p99 %.2f ms",
		stalledN, alive, printB.Round(time.Millisecond), float64(before)/(1<<20), float64(peak)/(1<<20), growth,
		float64(replayB.bytes)/1e6, ms(replayB.took), ms(p99(apiB)))
	if replayB.bytes < 50e6 || replayB.last != "exit" {
		b.Errorf("stalled replay: %d bytes ending in %q, want ≥ 50 MB and exit", replayB.bytes, replayB.last)
	}
	b.ReportMetric(growth, "rss-growth-mb")
	b.ReportMetric(float64(peakA-rssA)/(1<<20), "rss-growth-mb-baseline")
	b.ReportMetric(ms(replayA.took), "replay-ms-baseline")
	b.ReportMetric(ms(replayB.took), "replay-ms-stalled")
	b.ReportMetric(ms(replayB.took)/ms(replayA.took), "replay-ratio")
	b.ReportMetric(ms(p99(apiQuiet)), "api-p99-ms-quiet")
	b.ReportMetric(ms(p99(apiA)), "api-p99-ms-baseline")
	b.ReportMetric(ms(p99(apiB)), "api-p99-ms-stalled")
	b.ReportMetric(ms(p99(apiB))/ms(p99(apiA)), "api-ratio")
	b.ReportMetric(float64(alive), "stalled-alive")
}
