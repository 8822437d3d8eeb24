package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/runner"
	"github.com/aod/aod/server"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/store"
)

// benchSessions is how many sessions each latency benchmark runs (P1 in
// issue 3: p50/p99 over 200 sessions).
const benchSessions = 200

// BenchmarkFirstOutput measures POST /sessions → the first `output` event
// on the session's stream for `echo hi`, with and without bubblewrap, and a
// bare `bash -c 'echo hi'` → first stdout byte on the same machine in the
// same run, so the ratio can be read off one run.
func BenchmarkFirstOutput(b *testing.B) {
	b.Run("bare-bash", func(b *testing.B) {
		for b.Loop() {
			lat := make([]time.Duration, 0, benchSessions)
			for range benchSessions {
				start := time.Now()
				cmd := exec.Command("bash", "-c", "echo hi")
				out, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 1)
				if _, err := out.Read(buf); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				cmd.Wait()
			}
			reportPercentiles(b, lat)
		}
	})
	for _, mode := range []string{runner.SandboxNone, runner.SandboxBwrap} {
		b.Run("sandbox-"+mode, func(b *testing.B) {
			base, token, agentID := benchServer(b, mode)
			for b.Loop() {
				lat := make([]time.Duration, 0, benchSessions)
				for range benchSessions {
					lat = append(lat, firstOutput(b, base, token, agentID))
				}
				reportPercentiles(b, lat)
			}
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the percentiles are the figures; ns/op would count all 200 sessions
}

func benchServer(b *testing.B, mode string) (base, token, agentID string) {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	db, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	run, err := runner.New(db, runner.Config{DataDir: dir, Sandbox: mode})
	if err != nil {
		b.Skipf("BENCHMARK NOT RUN: sandbox %s unavailable here: %v", mode, err)
	}
	if err := run.Start(ctx); err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(server.New(db, sessions.New(db, run, store.SessionPolicy{}), server.Config{}))
	b.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		run.Shutdown(ctx, 0)
		db.Close()
	})
	u, _ := db.EnsureUser(ctx, "bench")
	_, token, _ = db.CreateAPIKey(ctx, u.ID, "bench", nil)
	a, err := db.CreateAgent(ctx, u.ID, store.AgentInput{Name: "sh", Model: store.Model{Runtime: "shell", Provider: "local", Model: store.ShellModel}})
	if err != nil {
		b.Fatal(err)
	}
	return ts.URL, token, a.ID
}

// firstOutput creates a session, opens its stream at once and returns the
// time from sending the POST to reading the first output event.
func firstOutput(b *testing.B, base, token, agentID string) time.Duration {
	start := time.Now()
	req, _ := http.NewRequest("POST", base+"/sessions", strings.NewReader(fmt.Sprintf(`{"agent_id":%q,"prompt":"echo hi"}`, agentID)))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var ack struct{ ID string }
	json.NewDecoder(res.Body).Decode(&ack)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		b.Fatalf("POST /sessions: %d", res.StatusCode)
	}
	req, _ = http.NewRequest("GET", base+"/sessions/"+ack.ID+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `data: {"type": "output"`) {
			d := time.Since(start)
			// Drain to the end so the session is finished before the next.
			for sc.Scan() {
			}
			return d
		}
	}
	b.Fatalf("stream of %s ended without output", ack.ID)
	return 0
}
