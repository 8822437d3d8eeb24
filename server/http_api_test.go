package server_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/matryer/is"
)

// canonicalIDPattern is a lowercase 8-4-4-4-12 UUID.
var canonicalIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// wireTimePattern is the contract's timestamp: UTC, microseconds, +00:00.
var wireTimePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)

// isJSONDetail checks the error envelope: JSON content type and a non-empty
// string detail.
func isJSONDetail(is *is.I, r apitest.Response) {
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
	d, ok := r.Obj()["detail"].(string)
	is.True(ok && d != "") // string detail
}

func TestHealth(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	a.Run(t, "", []apitest.Scenario{
		{Name: "public GET", Method: "GET", Path: "/health", WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["status"], "ok") // status ok
				limits, _ := r.Obj()["limits"].(map[string]any)
				is.Equal(limits["streams_per_user"], "1000")     // the stream limits an operator set (defaults here)
				is.Equal(limits["streams"], "10000")             // in all
				is.Equal(limits["stream_write_timeout"], "1m0s") // and the write deadline
			}},
		{Name: "GET with a bad token is still public", Method: "GET", Path: "/health", Token: "aod_invalid_key", WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["status"], "ok") // status ok
			}},
		{Name: "HEAD, for load balancers", Method: "HEAD", Path: "/health", WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Raw), 0) // the status alone
			}},
		{Name: "POST", Method: "POST", Path: "/health", WantStatus: 405,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405 body
				is.True(strings.Contains(r.Header.Get("Allow"), "GET"))           // Allow names GET
			}},
	})
}

func TestAuthMissing(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	owner := a.Token("alice")
	id := a.MustCreate("/environments", owner, map[string]any{"name": "e"})["id"].(string)
	unauthorized := func(is *is.I, r apitest.Response) {
		isJSONDetail(is, r)
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "POST /environments", Method: "POST", Path: "/environments", Body: map[string]any{"name": "x"}, WantStatus: 401, Check: unauthorized},
		{Name: "GET /environments", Method: "GET", Path: "/environments", WantStatus: 401, Check: unauthorized},
		{Name: "GET /environments/{id}", Method: "GET", Path: "/environments/{id}", WantStatus: 401, Check: unauthorized},
		{Name: "PUT /environments/{id}", Method: "PUT", Path: "/environments/{id}", Body: map[string]any{"version": 1}, WantStatus: 401, Check: unauthorized},
		{Name: "DELETE /environments/{id}/delete", Method: "DELETE", Path: "/environments/{id}/delete", WantStatus: 401, Check: unauthorized},
		{Name: "POST /environments/{id}/archive", Method: "POST", Path: "/environments/{id}/archive", WantStatus: 401, Check: unauthorized},
		{Name: "GET /environments/{id}/versions", Method: "GET", Path: "/environments/{id}/versions", WantStatus: 401, Check: unauthorized},
		{Name: "POST /agents", Method: "POST", Path: "/agents", Body: map[string]any{"name": "x"}, WantStatus: 401, Check: unauthorized},
		{Name: "GET /agents", Method: "GET", Path: "/agents", WantStatus: 401, Check: unauthorized},
		{Name: "invalid JSON still 401 first", Method: "POST", Path: "/environments", Body: `{bad`, WantStatus: 401, Check: unauthorized},
		{Name: "nothing was changed", Method: "GET", Path: "/environments/{id}", Token: owner, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["version"], float64(1))    // not updated
				is.True(hasNullKey(r.Obj(), "archived_at")) // not archived
			}},
		{Name: "nothing was created", Method: "GET", Path: "/environments", Token: owner, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 1) // only the one environment
			}},
	})
}

func TestAuthRejectedKeys(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	ctx := context.Background()
	u, err := a.DB.EnsureUser(ctx, "alice")
	is.NoErr(err) // create user

	r := a.Do("GET", "/environments", "aod_invalid_key", nil)
	is.Equal(r.Status, 401)                                                     // unknown key
	is.Equal(r.Obj(), map[string]any{"detail": "Invalid API key"})              // exact body
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type

	revoked := a.Token("alice")
	is.Equal(a.Do("GET", "/environments", revoked, nil).Status, 200) // the key works before revocation
	_, err = a.DB.RevokeAPIKeyByPrefix(ctx, revoked[:12])
	is.NoErr(err) // revoke
	r = a.Do("GET", "/environments", revoked, nil)
	is.Equal(r.Status, 401)                           // revoked key
	is.True(strings.Contains(r.Detail(), "inactive")) // detail says inactive

	past := time.Now().Add(-time.Hour)
	_, expired, err := a.DB.CreateAPIKey(ctx, u.ID, "old", &past)
	is.NoErr(err) // create an expired key
	r = a.Do("GET", "/environments", expired, nil)
	is.Equal(r.Status, 401)                          // expired key
	is.True(strings.Contains(r.Detail(), "expired")) // detail says expired

	future := time.Now().Add(time.Hour)
	_, valid, err := a.DB.CreateAPIKey(ctx, u.ID, "new", &future)
	is.NoErr(err)                                                  // create a key expiring later
	is.Equal(a.Do("GET", "/environments", valid, nil).Status, 200) // a not-yet-expired key works
}

func TestAuthMalformedHeader(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	valid := a.Token("alice")
	for _, c := range []struct{ name, header string }{
		{"other scheme", "Token x"},
		{"scheme only", "Bearer"},
		{"empty token", "Bearer "},
		{"basic auth", "Basic YWxpY2U6cHc="},
		{"token without scheme", valid},
		{"no space after Bearer", "Bearer" + valid},
		{"unknown key without scheme", "aod_invalid_key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			r := a.Send("GET", "/environments", map[string]string{"Authorization": c.header}, nil)
			is.Equal(r.Status, 401) // malformed Authorization header
			isJSONDetail(is, r)
		})
	}
	t.Run("well-formed header works", func(t *testing.T) {
		is := is.New(t)
		r := a.Send("GET", "/environments", map[string]string{"Authorization": "Bearer " + valid}, nil)
		is.Equal(r.Status, 200) // control: the same token with the Bearer scheme
	})
}

func TestMethodNotAllowedBeforeAuth(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	id := missingEnvID
	notAllowed := func(allow string) func(is *is.I, r apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			is.Equal(r.Obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405 body
			is.True(strings.Contains(r.Header.Get("Allow"), allow))           // Allow names the right method
		}
	}
	rows := []apitest.Scenario{
		{Name: "PATCH /environments", Method: "PATCH", Path: "/environments", WantStatus: 405, Check: notAllowed("POST")},
		{Name: "DELETE /environments", Method: "DELETE", Path: "/environments", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "DELETE /environments/{id}", Method: "DELETE", Path: "/environments/{id}", WantStatus: 405, Check: notAllowed("PUT")},
		{Name: "POST /environments/{id}/delete", Method: "POST", Path: "/environments/{id}/delete", WantStatus: 405, Check: notAllowed("DELETE")},
		{Name: "GET /environments/{id}/archive", Method: "GET", Path: "/environments/{id}/archive", WantStatus: 405, Check: notAllowed("POST")},
		{Name: "POST /environments/{id}/versions", Method: "POST", Path: "/environments/{id}/versions", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "PATCH /agents", Method: "PATCH", Path: "/agents", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "DELETE /agents/{id}", Method: "DELETE", Path: "/agents/{id}", WantStatus: 405, Check: notAllowed("GET")},
		{Name: "PUT /health", Method: "PUT", Path: "/health", WantStatus: 405, Check: notAllowed("GET")},
	}
	invalid := make([]apitest.Scenario, 0, len(rows))
	for _, sc := range rows {
		sc.Name += " with an invalid token"
		sc.Token = "aod_invalid_key"
		invalid = append(invalid, sc)
	}
	a.Run(t, id, append(rows, invalid...))
}

func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	rows := []apitest.Scenario{
		{Name: "unknown path", Method: "GET", Path: "/nope", WantStatus: 404},
		{Name: "unknown nested path", Method: "GET", Path: "/environments/" + missingEnvID + "/nope", WantStatus: 404},
		{Name: "api prefix", Method: "GET", Path: "/v1/agents", WantStatus: 404},
		{Name: "trailing slash agents", Method: "GET", Path: "/agents/", WantStatus: 404},
		{Name: "trailing slash POST agents", Method: "POST", Path: "/agents/", Body: map[string]any{}, WantStatus: 404},
		{Name: "trailing slash environments", Method: "GET", Path: "/environments/", WantStatus: 404},
		{Name: "trailing slash health", Method: "GET", Path: "/health/", WantStatus: 404},
	}
	var all []apitest.Scenario
	for _, sc := range rows {
		sc.Check = func(is *is.I, r apitest.Response) {
			isJSONDetail(is, r)
		}
		all = append(all, sc)
		authed := sc
		authed.Name += " authenticated"
		authed.Token = tok
		all = append(all, authed)
	}
	a.Run(t, "", all)
}

// TestJSONContentTypeEverywhere walks one response of every status the API
// has so far and checks each is JSON with the right Content-Type.
func TestJSONContentTypeEverywhere(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/environments", tok, map[string]any{"name": "taken"})["id"].(string)
	jsonBody := func(is *is.I, r apitest.Response) {
		is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
		_, ok := r.Body.(map[string]any)
		is.True(ok) // body is a JSON object
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "200 health", Method: "GET", Path: "/health", WantStatus: 200, Check: jsonBody},
		{Name: "200 list", Method: "GET", Path: "/environments", Token: tok, WantStatus: 200, Check: jsonBody},
		{Name: "201 create", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{"name": "new"}, WantStatus: 201, Check: jsonBody},
		{Name: "400 invalid JSON", Method: "POST", Path: "/environments", Token: tok, Body: "{", WantStatus: 400, Check: jsonBody},
		{Name: "401", Method: "GET", Path: "/environments", WantStatus: 401, Check: jsonBody},
		{Name: "404 resource", Method: "GET", Path: "/environments/" + missingEnvID, Token: tok, WantStatus: 404, Check: jsonBody},
		{Name: "404 route", Method: "GET", Path: "/nowhere", WantStatus: 404, Check: jsonBody},
		{Name: "405", Method: "PATCH", Path: "/environments", WantStatus: 405, Check: jsonBody},
		{Name: "409", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{"name": "taken"}, WantStatus: 409, Check: jsonBody},
		{Name: "422", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{}, WantStatus: 422, Check: jsonBody},
		{Name: "200 delete", Method: "DELETE", Path: "/environments/{id}/delete", Token: tok, WantStatus: 200, Check: jsonBody},
	})
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/environments", tok, map[string]any{"name": "e"})["id"].(string)
	huge := `{"name": "` + strings.Repeat("a", 4<<20) + `"}`
	tooLarge := func(is *is.I, r apitest.Response) {
		isJSONDetail(is, r)
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "create", Method: "POST", Path: "/environments", Token: tok, Body: huge, WantStatus: 413, Check: tooLarge},
		{Name: "update", Method: "PUT", Path: "/environments/{id}", Token: tok, Body: `{"version": 1, "setup_script": "` + strings.Repeat("b", 4<<20) + `"}`,
			WantStatus: 413, Check: tooLarge},
		{Name: "nothing stored", Method: "GET", Path: "/environments/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["version"], float64(1)) // the oversized update did nothing
			}},
		{Name: "just under the limit is not 413", Method: "POST", Path: "/environments", Token: tok,
			Body: `{"name": "big", "setup_script": "` + strings.Repeat("c", 4<<20-100) + `"}`, WantStatus: 201},
	})
}

func TestCORS(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	origin := map[string]string{"Origin": "https://app.example.com"}
	t.Run("API responses allow any origin", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path string
			headers            map[string]string
			status             int
		}{
			{"authenticated GET", "GET", "/environments", map[string]string{"Origin": origin["Origin"], "Authorization": "Bearer " + tok}, 200},
			{"401", "GET", "/environments", origin, 401},
			{"health", "GET", "/health", origin, 200},
			{"404", "GET", "/nope", origin, 404},
		} {
			t.Run(c.name, func(t *testing.T) {
				is := is.New(t)
				r := a.Send(c.method, c.path, c.headers, nil)
				is.Equal(r.Status, c.status)                                          // status
				is.Equal(r.Header.Get("Access-Control-Allow-Origin"), "*")            // any origin
				is.Equal(r.Header.Get("Access-Control-Allow-Credentials"), "")        // no credentials mode
				is.Equal(len(r.Header.Values("Access-Control-Allow-Credentials")), 0) // header absent
			})
		}
	})
	for _, c := range []struct{ path, method string }{{"/agents", "POST"}, {"/environments/" + missingEnvID + "/delete", "DELETE"}, {"/environments", "GET"}} {
		t.Run("preflight "+c.method+" "+c.path, func(t *testing.T) {
			is := is.New(t)
			r := a.Send("OPTIONS", c.path, map[string]string{
				"Origin":                         origin["Origin"],
				"Access-Control-Request-Method":  c.method,
				"Access-Control-Request-Headers": "authorization, content-type",
			}, nil)
			is.Equal(r.Status, 200)                                                  // preflight answered without auth
			is.Equal(r.Header.Get("Access-Control-Allow-Origin"), "*")               // any origin
			methods := strings.ToUpper(r.Header.Get("Access-Control-Allow-Methods")) //
			is.True(strings.Contains(methods, c.method))                             // the requested method is allowed
			headers := strings.ToLower(r.Header.Get("Access-Control-Allow-Headers"))
			is.True(strings.Contains(headers, "authorization"))                   // Authorization may be sent
			is.True(strings.Contains(headers, "content-type"))                    // Content-Type may be sent
			is.Equal(len(r.Header.Values("Access-Control-Allow-Credentials")), 0) // no credentials mode
		})
	}
}

func TestWireIDsAndTimestamps(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	env := a.MustCreate("/environments", tok, map[string]any{"name": "e"})
	envID, _ := env["id"].(string)
	agent := a.MustCreate("/agents", tok, map[string]any{"name": "ag", "model": "local/shell", "runtime": "shell", "environment_id": envID})
	archived := a.Do("POST", "/environments/"+envID+"/archive", tok, nil)
	is.Equal(archived.Status, 200) // archive
	versions := a.Do("GET", "/environments/"+envID+"/versions", tok, nil)
	is.Equal(versions.Status, 200) // versions
	list := a.Do("GET", "/agents", tok, nil)
	is.Equal(len(list.Data()), 1) // the agent is listed

	objects := []map[string]any{env, agent, archived.Obj(), list.Data()[0].(map[string]any)}
	for _, v := range versions.Data() {
		objects = append(objects, v.(map[string]any))
	}
	for _, o := range objects {
		id, _ := o["id"].(string)
		is.True(canonicalIDPattern.MatchString(id)) // id is a lowercase canonical UUID
		for _, k := range []string{"created_at", "updated_at", "archived_at"} {
			v, present := o[k]
			if !present || v == nil {
				continue
			}
			s, _ := v.(string)
			is.True(wireTimePattern.MatchString(s)) // timestamp has microseconds and +00:00
		}
		created, _ := o["created_at"].(string)
		is.True(created != "") // every object has created_at
	}
	envRef, _ := agent["environment_id"].(string)
	is.True(canonicalIDPattern.MatchString(envRef)) // referenced ids are canonical too
	_, hasArchivedAt := archived.Obj()["archived_at"].(string)
	is.True(hasArchivedAt) // the archived environment carried a timestamp to check
}
