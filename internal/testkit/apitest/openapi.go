package apitest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aod/aod/internal/testkit/apitest/openapicheck"
	"github.com/aod/aod/server"
)

// Every response a Client receives from the API is held to the server's
// OpenAPI document (GET /openapi.json): its status must be documented for
// the request's path and method, its media type too, and a JSON body must
// validate against the documented schema; each event of a session stream
// must validate as a stream event. Problems are collected as responses
// arrive and reported when the test ends, so the document stays complete
// and true as the API changes: a new field, status or route fails the
// tests that see it until the document says so.

var (
	contractOnce sync.Once
	contract     *openapicheck.Contract
	contractErr  error
)

// loadContract compiles the document once per test process.
func loadContract() (*openapicheck.Contract, error) {
	contractOnce.Do(func() { contract, contractErr = openapicheck.Load(server.OpenAPI()) })
	return contract, contractErr
}

// maxReported bounds how many problems one test reports.
const maxReported = 20

// responseChecks collects the problems of one client's responses.
type responseChecks struct {
	mu       sync.Mutex
	problems []string
	more     int
}

// newResponseChecks checks the responses of a client of t and reports
// their problems when t ends.
func newResponseChecks(t testing.TB) *responseChecks {
	rc := &responseChecks{}
	t.Cleanup(func() {
		if _, err := loadContract(); err != nil {
			t.Errorf("the OpenAPI document does not load, so no response was checked: %v", err)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, p := range rc.problems {
			t.Errorf("response not in the OpenAPI document (server/openapi.json): %s", p)
		}
		if rc.more > 0 {
			t.Errorf("and %d more responses not in the OpenAPI document", rc.more)
		}
	})
	return rc
}

func (rc *responseChecks) add(err error) {
	if err == nil {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.problems) < maxReported {
		rc.problems = append(rc.problems, err.Error())
	} else {
		rc.more++
	}
}

// apiPath reports whether a request path is the API's: the web UI's pages
// ("/", "/ui", "/ui/...", "/static/...") are HTML and not in the document.
func apiPath(target string) bool {
	p, _, _ := strings.Cut(target, "?")
	return p != "/" && p != "/ui" && !strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "/static/")
}

// response checks one response (rc may be nil: no checks).
func (rc *responseChecks) response(method, target string, status int, contentType string, body []byte) {
	if rc == nil || !apiPath(target) || method == "OPTIONS" {
		// OPTIONS is CORS preflight, answered before routing.
		return
	}
	c, err := loadContract()
	if err != nil {
		return // reported once, at the end
	}
	rc.add(c.Check(method, target, status, contentType, body))
}

// streamEvents checks the events of a 200 event stream.
func (rc *responseChecks) streamEvents(target string, events [][]byte) {
	if rc == nil {
		return
	}
	c, err := loadContract()
	if err != nil {
		return
	}
	for i, data := range events {
		if err := c.CheckEvent(target, data); err != nil {
			rc.add(fmt.Errorf("event %d: %w", i, err))
			return // one bad event is enough to tell
		}
	}
}
