package server_test

import (
	"os"
	"testing"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
)

// The API tests drive a real server over HTTP (apitest). Each test has its
// own server over its own data dir, so every test runs in parallel; one
// whose sessions never need to run gets a runner that only records.

func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }

var (
	// recording starts a server whose runner runs nothing: for tests of
	// validation, ownership and routing.
	recording = apitest.Options{}
	// running starts one with the real runner: sessions run as real
	// processes in sprites.
	running = apitest.Options{Runner: apitest.RealRunner}
)
