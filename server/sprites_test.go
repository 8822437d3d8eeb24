package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit"
	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/runner"
	"github.com/aod/aod/runner/sprites"
	"github.com/aod/aod/runner/sprites/spritesfake"
	"github.com/matryer/is"
)

// These tests run sessions on the Sprites backend, against the fake of the
// service, whatever AOD_TEST_SANDBOX says: what only a remote service
// does (capacity, faults, a sprite deleted behind aod's back, its network
// policy). The scenario tests run there too with AOD_TEST_SANDBOX=sprites.

var onSprites = apitest.Options{Runner: apitest.RealRunner, Sandbox: runner.SandboxSprites}

func spritesServer(t *testing.T) *apitest.Server {
	t.Helper()
	spritesfake.RequireExec(t)
	return apitest.New(t, onSprites)
}

// The service out of capacity (429 with Retry-After) keeps the session
// pending, its create_sprite stage saying it waits, until a sprite can be
// made; then the session runs as any other, in a Sprite named after it.
func TestSpritesWaitForCapacity(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := spritesServer(t)
	a.Sprites.Inject(spritesfake.Fault{Op: "create", Status: 429, Code: "concurrent_sprite_limit_exceeded", RetryAfter: time.Second, Times: 2})
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo on-a-sprite"))
	waiting := a.Stream(tok, id, apitest.StreamOptions{Stop: func(e testkit.Frame) bool {
		msg, _ := e.Data["message"].(string)
		return e.Type() == "stage" && strings.Contains(msg, "waiting for capacity")
	}})
	msg, _ := waiting.Last().Data["message"].(string)
	is.True(strings.Contains(msg, "waiting for capacity on Sprites")) // the stage says it waits (see msg)
	is.Equal(a.Session(tok, id)["status"], "pending")                 // and the session is pending meanwhile
	s := a.Finish(tok, id)
	is.Equal(s.Last().Data["code"], float64(0))          // then it runs
	is.Equal(s.Output("stdout", 1), "on-a-sprite\n")     // its command
	is.Equal(a.Sprites.Requests("create"), 3)            // after two refusals
	is.Equal(a.Sprites.Sprites(), []string{"aod-" + id}) // on the Sprite named after it
	var stages []string
	for _, e := range s.Events {
		if e.Type() == "stage" && e.Data["state"] == "done" {
			stages = append(stages, e.Data["stage"].(string))
		}
	}
	is.Equal(stages[0], "create_sprite") // through the same stages (see stages)
}

// The service's 5xx on calls safe to repeat are retried, and a dropped
// exec socket is attached again: the output arrives whole, once.
func TestSpritesFaultsRetried(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := spritesServer(t)
	a.Sprites.Inject(spritesfake.Fault{Op: "fs.write", Status: 503, Times: 1})
	a.Sprites.Inject(spritesfake.Fault{Op: "exec", DropAfterFrames: 2, Times: 2})
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "for i in 1 2 3 4 5 6; do echo line-$i; sleep 0.05; done"))
	s := a.Finish(tok, id)
	is.Equal(s.Last().Data["code"], float64(0))                                         // the turn completes
	is.Equal(s.Output("stdout", 1), "line-1\nline-2\nline-3\nline-4\nline-5\nline-6\n") // every line, once
	is.True(a.Sprites.Requests("attach") > 0)                                           // after attaching again
}

// A Sprite deleted outside aod: the session's next prompt is the
// original's 409, and nothing runs.
func TestSpritesVanished(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := spritesServer(t)
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "true"))
	is.Equal(a.WaitStatus(tok, id, "completed", "failed")["status"], "completed")
	a.Sprites.Vanish("aod-" + id)
	r := a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "echo again"})
	is.Equal(r.Status, http.StatusConflict)                                                             // refused
	is.Equal(r.Obj()["detail"], "Session backend is no longer available; start a new session.")         // as the original says
	is.Equal(a.Do("GET", "/sessions/"+id+"/files?path=/home/sprite", tok, nil).Status, http.StatusGone) // its files are gone too
}

// A limited environment becomes the Sprite's network policy: its hosts
// and the model API's, then deny; unrestricted is the service's defaults.
// Delete removes the Sprite.
func TestSpritesNetworkPolicy(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := spritesServer(t)
	tok := a.Token("alice")
	env := a.MustCreate("/environments", tok, map[string]any{"name": "tight",
		"networking": map[string]any{"type": "limited", "allowed_hosts": []any{"api.example.com"}}})
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "true", "environment_id", env["id"]))
	is.Equal(a.WaitStatus(tok, id, "completed", "failed")["status"], "completed")
	rules := a.Sprites.Policy("aod-" + id)
	is.True(len(rules) >= 2)                                                           // (see rules)
	is.Equal(rules[0], map[string]any{"domain": "api.example.com", "action": "allow"}) // the environment's host
	is.Equal(rules[len(rules)-1], map[string]any{"domain": "*", "action": "deny"})     // then nothing else

	open := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "true"))
	is.Equal(a.WaitStatus(tok, open, "completed", "failed")["status"], "completed")
	is.Equal(a.Sprites.Policy("aod-"+open), []map[string]any{{"include": "defaults"}}) // unrestricted: the defaults

	is.Equal(a.Do("DELETE", "/sessions/"+open+"/delete", tok, nil).Status, http.StatusOK)
	is.True(testkit.Eventually(10*time.Second, func() bool { return a.Sprites.SpriteDir("aod-"+open) == "" })) // its Sprite is deleted
}

// The sweep removes Sprites with aod's prefix that no session owns (left
// by a crash, say), and leaves the sessions' and everyone else's.
func TestSpritesSweep(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	spritesfake.RequireExec(t)
	o := onSprites
	o.SweepInterval = 200 * time.Millisecond
	a := apitest.New(t, o)
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "true"))
	is.Equal(a.WaitStatus(tok, id, "completed", "failed")["status"], "completed")
	c := sprites.New(sprites.Config{URL: a.Sprites.URL(), Token: a.Sprites.Token()})
	orphan := apitest.SpritesPrefix + "01a25160-0000-7000-8000-000000000000"
	for _, name := range []string{orphan, "someone-elses"} {
		_, err := c.Create(context.Background(), name)
		is.NoErr(err)
	}
	is.True(testkit.Eventually(10*time.Second, func() bool { return a.Sprites.SpriteDir(orphan) == "" })) // the orphan goes
	is.True(a.Sprites.SpriteDir("aod-"+id) != "")                                                         // the session's stays
	is.True(a.Sprites.SpriteDir("someone-elses") != "")                                                   // and what is not aod's
}

// Without in-band signals advertised, an interrupt reaches the command
// through the service's kill endpoint; the session goes on.
func TestSpritesInterruptByKillEndpoint(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	spritesfake.RequireExec(t)
	o := onSprites
	o.SpritesOptions = spritesfake.Options{Capabilities: []string{}}
	a := apitest.New(t, o)
	tok := a.Token("alice")
	id := a.StartSession(tok, apitest.SessionBody(a.ShellAgent(tok), "echo started; sleep 100"))
	a.Stream(tok, id, apitest.StreamOptions{Stop: func(e testkit.Frame) bool { return e.Type() == "output" }})
	is.Equal(a.Do("POST", "/sessions/"+id+"/interrupt", tok, nil).Status, http.StatusAccepted)
	s := a.WaitStatus(tok, id, "completed", "failed")
	is.Equal(s["status"], "completed")      // interrupted turns complete
	is.True(a.Sprites.Requests("kill") > 0) // through the kill endpoint
	turns := a.Do("GET", "/sessions/"+id+"/turns", tok, nil).Data()
	is.Equal(turns[0].(map[string]any)["interrupted"], true)
	r := a.Do("POST", "/sessions/"+id+"/prompt", tok, map[string]any{"prompt": "echo again"})
	is.Equal(r.Status, http.StatusAccepted) // and the session takes the next prompt
	is.Equal(a.Finish(tok, id).Output("stdout", 2), "again\n")
}
