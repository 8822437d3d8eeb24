// Package testkit holds what aod's tests share and that needs nothing of
// aod itself: an event-stream client, golden files behind one -update
// flag, a /proc scanner for a session's processes, and a poll. Only tests
// import it; the harness that starts a real server is in apitest.
package testkit

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// MinParallel is how many parallel tests Run lets run at once when
// -test.parallel is not given. aod's tests mostly wait on child processes,
// timers and sockets, not on the CPU, so the default (GOMAXPROCS) would
// leave a small machine idle while a ten-second turn timeout ticks.
const MinParallel = 16

// Run runs a package's tests from its TestMain, with at least MinParallel
// parallel tests at once unless -test.parallel was given, and returns the
// exit code.
func Run(m *testing.M) int {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); !given && p != nil {
		if n, err := strconv.Atoi(p.Value.String()); err == nil && n < MinParallel {
			p.Value.Set(strconv.Itoa(MinParallel))
		}
	}
	return m.Run()
}

// pollEvery is how often Eventually looks again.
const pollEvery = 10 * time.Millisecond

// Eventually checks cond until it holds or within has passed, and reports
// whether it held. It waits for the kernel, a runner or a server to catch
// up; the bound is a hang guard, never a latency assertion.
func Eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(pollEvery)
	}
	return true
}

// CannotRun ends a test that cannot run on this machine, loudly: a skip
// whose message stands out, or a failure when the environment variable
// require is "1" (CI sets AOD_REQUIRE_BWRAP and AOD_REQUIRE_BROWSER, so it
// never passes without running what it must).
func CannotRun(t testing.TB, require, format string, args ...any) {
	t.Helper()
	msg := "!!! NOT RUN: " + fmt.Sprintf(format, args...) + " !!!"
	if os.Getenv(require) == "1" {
		t.Fatalf("%s (%s=1 requires it)", msg, require)
	}
	t.Skip(msg)
}
