package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// canonicalIDPattern is a lowercase 8-4-4-4-12 UUID.
var canonicalIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// wireTimePattern is the contract's timestamp: UTC, microseconds, +00:00.
var wireTimePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$`)

// sendWithHeaders sends a request with exactly the given headers (no
// Authorization unless given), for what a.do cannot express.
func sendWithHeaders(t *testing.T, a *api, method, path string, headers map[string]string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, a.URL+path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := a.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	r := response{Status: res.StatusCode, Header: res.Header, Raw: raw}
	var v any
	if json.Unmarshal(raw, &v) == nil {
		r.Body = v
	}
	return r
}

// isJSONDetail checks the error envelope: JSON content type and a non-empty
// string detail.
func isJSONDetail(is *is.I, r response) {
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
	d, ok := r.obj()["detail"].(string)
	is.True(ok && d != "") // string detail
}

func TestHealth(t *testing.T) {
	a := newAPI(t)
	a.run(t, "", []scenario{
		{name: "public GET", method: "GET", path: "/health", wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["status"], "ok") // status ok
			}},
		{name: "GET with a bad token is still public", method: "GET", path: "/health", token: "aod_invalid_key", wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["status"], "ok") // status ok
			}},
		{name: "POST", method: "POST", path: "/health", wantStatus: 405,
			check: func(is *is.I, r response) {
				is.Equal(r.obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405 body
				is.True(strings.Contains(r.Header.Get("Allow"), "GET"))           // Allow names GET
			}},
	})
}

func TestAuthMissing(t *testing.T) {
	a := newAPI(t)
	owner := a.token("alice")
	id := a.mustCreate("/environments", owner, map[string]any{"name": "e"})["id"].(string)
	unauthorized := func(is *is.I, r response) {
		isJSONDetail(is, r)
	}
	a.run(t, id, []scenario{
		{name: "POST /environments", method: "POST", path: "/environments", body: map[string]any{"name": "x"}, wantStatus: 401, check: unauthorized},
		{name: "GET /environments", method: "GET", path: "/environments", wantStatus: 401, check: unauthorized},
		{name: "GET /environments/{id}", method: "GET", path: "/environments/{id}", wantStatus: 401, check: unauthorized},
		{name: "PUT /environments/{id}", method: "PUT", path: "/environments/{id}", body: map[string]any{"version": 1}, wantStatus: 401, check: unauthorized},
		{name: "DELETE /environments/{id}/delete", method: "DELETE", path: "/environments/{id}/delete", wantStatus: 401, check: unauthorized},
		{name: "POST /environments/{id}/archive", method: "POST", path: "/environments/{id}/archive", wantStatus: 401, check: unauthorized},
		{name: "GET /environments/{id}/versions", method: "GET", path: "/environments/{id}/versions", wantStatus: 401, check: unauthorized},
		{name: "POST /agents", method: "POST", path: "/agents", body: map[string]any{"name": "x"}, wantStatus: 401, check: unauthorized},
		{name: "GET /agents", method: "GET", path: "/agents", wantStatus: 401, check: unauthorized},
		{name: "invalid JSON still 401 first", method: "POST", path: "/environments", body: `{bad`, wantStatus: 401, check: unauthorized},
		{name: "nothing was changed", method: "GET", path: "/environments/{id}", token: owner, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["version"], float64(1))    // not updated
				is.True(hasNullKey(r.obj(), "archived_at")) // not archived
			}},
		{name: "nothing was created", method: "GET", path: "/environments", token: owner, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(len(r.data()), 1) // only the one environment
			}},
	})
}

func TestAuthRejectedKeys(t *testing.T) {
	is := is.New(t)
	a := newAPI(t)
	ctx := context.Background()
	u, err := a.DB.EnsureUser(ctx, "alice")
	is.NoErr(err) // create user

	r := a.do("GET", "/environments", "aod_invalid_key", nil)
	is.Equal(r.Status, 401)                                                     // unknown key
	is.Equal(r.obj(), map[string]any{"detail": "Invalid API key"})              // exact body
	is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type

	revoked := a.token("alice")
	is.Equal(a.do("GET", "/environments", revoked, nil).Status, 200) // the key works before revocation
	_, err = a.DB.RevokeAPIKeyByPrefix(ctx, revoked[:12])
	is.NoErr(err) // revoke
	r = a.do("GET", "/environments", revoked, nil)
	is.Equal(r.Status, 401)                           // revoked key
	is.True(strings.Contains(r.detail(), "inactive")) // detail says inactive

	past := time.Now().Add(-time.Hour)
	_, expired, err := a.DB.CreateAPIKey(ctx, u.ID, "old", &past)
	is.NoErr(err) // create an expired key
	r = a.do("GET", "/environments", expired, nil)
	is.Equal(r.Status, 401)                          // expired key
	is.True(strings.Contains(r.detail(), "expired")) // detail says expired

	future := time.Now().Add(time.Hour)
	_, valid, err := a.DB.CreateAPIKey(ctx, u.ID, "new", &future)
	is.NoErr(err)                                                  // create a key expiring later
	is.Equal(a.do("GET", "/environments", valid, nil).Status, 200) // a not-yet-expired key works
}

func TestAuthMalformedHeader(t *testing.T) {
	a := newAPI(t)
	valid := a.token("alice")
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
			r := sendWithHeaders(t, a, "GET", "/environments", map[string]string{"Authorization": c.header}, nil)
			is.Equal(r.Status, 401) // malformed Authorization header
			isJSONDetail(is, r)
		})
	}
	t.Run("well-formed header works", func(t *testing.T) {
		is := is.New(t)
		r := sendWithHeaders(t, a, "GET", "/environments", map[string]string{"Authorization": "Bearer " + valid}, nil)
		is.Equal(r.Status, 200) // control: the same token with the Bearer scheme
	})
}

func TestMethodNotAllowedBeforeAuth(t *testing.T) {
	a := newAPI(t)
	id := missingEnvID
	notAllowed := func(allow string) func(is *is.I, r response) {
		return func(is *is.I, r response) {
			is.Equal(r.obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405 body
			is.True(strings.Contains(r.Header.Get("Allow"), allow))           // Allow names the right method
		}
	}
	rows := []scenario{
		{name: "PATCH /environments", method: "PATCH", path: "/environments", wantStatus: 405, check: notAllowed("POST")},
		{name: "DELETE /environments", method: "DELETE", path: "/environments", wantStatus: 405, check: notAllowed("GET")},
		{name: "DELETE /environments/{id}", method: "DELETE", path: "/environments/{id}", wantStatus: 405, check: notAllowed("PUT")},
		{name: "POST /environments/{id}/delete", method: "POST", path: "/environments/{id}/delete", wantStatus: 405, check: notAllowed("DELETE")},
		{name: "GET /environments/{id}/archive", method: "GET", path: "/environments/{id}/archive", wantStatus: 405, check: notAllowed("POST")},
		{name: "POST /environments/{id}/versions", method: "POST", path: "/environments/{id}/versions", wantStatus: 405, check: notAllowed("GET")},
		{name: "PATCH /agents", method: "PATCH", path: "/agents", wantStatus: 405, check: notAllowed("GET")},
		{name: "DELETE /agents/{id}", method: "DELETE", path: "/agents/{id}", wantStatus: 405, check: notAllowed("GET")},
		{name: "PUT /health", method: "PUT", path: "/health", wantStatus: 405, check: notAllowed("GET")},
	}
	invalid := make([]scenario, 0, len(rows))
	for _, sc := range rows {
		sc.name += " with an invalid token"
		sc.token = "aod_invalid_key"
		invalid = append(invalid, sc)
	}
	a.run(t, id, append(rows, invalid...))
}

func TestUnknownRoutes(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	rows := []scenario{
		{name: "unknown path", method: "GET", path: "/nope", wantStatus: 404},
		{name: "unknown nested path", method: "GET", path: "/environments/" + missingEnvID + "/nope", wantStatus: 404},
		{name: "api prefix", method: "GET", path: "/v1/agents", wantStatus: 404},
		{name: "trailing slash agents", method: "GET", path: "/agents/", wantStatus: 404},
		{name: "trailing slash POST agents", method: "POST", path: "/agents/", body: map[string]any{}, wantStatus: 404},
		{name: "trailing slash environments", method: "GET", path: "/environments/", wantStatus: 404},
		{name: "trailing slash health", method: "GET", path: "/health/", wantStatus: 404},
	}
	var all []scenario
	for _, sc := range rows {
		sc.check = func(is *is.I, r response) {
			isJSONDetail(is, r)
		}
		all = append(all, sc)
		authed := sc
		authed.name += " authenticated"
		authed.token = tok
		all = append(all, authed)
	}
	a.run(t, "", all)
}

// TestJSONContentTypeEverywhere walks one response of every status the API
// has so far and checks each is JSON with the right Content-Type.
func TestJSONContentTypeEverywhere(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/environments", tok, map[string]any{"name": "taken"})["id"].(string)
	jsonBody := func(is *is.I, r response) {
		is.True(strings.Contains(r.Header.Get("Content-Type"), "application/json")) // JSON content type
		_, ok := r.Body.(map[string]any)
		is.True(ok) // body is a JSON object
	}
	a.run(t, id, []scenario{
		{name: "200 health", method: "GET", path: "/health", wantStatus: 200, check: jsonBody},
		{name: "200 list", method: "GET", path: "/environments", token: tok, wantStatus: 200, check: jsonBody},
		{name: "201 create", method: "POST", path: "/environments", token: tok, body: map[string]any{"name": "new"}, wantStatus: 201, check: jsonBody},
		{name: "400 invalid JSON", method: "POST", path: "/environments", token: tok, body: "{", wantStatus: 400, check: jsonBody},
		{name: "401", method: "GET", path: "/environments", wantStatus: 401, check: jsonBody},
		{name: "404 resource", method: "GET", path: "/environments/" + missingEnvID, token: tok, wantStatus: 404, check: jsonBody},
		{name: "404 route", method: "GET", path: "/nowhere", wantStatus: 404, check: jsonBody},
		{name: "405", method: "PATCH", path: "/environments", wantStatus: 405, check: jsonBody},
		{name: "409", method: "POST", path: "/environments", token: tok, body: map[string]any{"name": "taken"}, wantStatus: 409, check: jsonBody},
		{name: "422", method: "POST", path: "/environments", token: tok, body: map[string]any{}, wantStatus: 422, check: jsonBody},
		{name: "200 delete", method: "DELETE", path: "/environments/{id}/delete", token: tok, wantStatus: 200, check: jsonBody},
	})
}

func TestBodyTooLarge(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
	id := a.mustCreate("/environments", tok, map[string]any{"name": "e"})["id"].(string)
	huge := `{"name": "` + strings.Repeat("a", 4<<20) + `"}`
	tooLarge := func(is *is.I, r response) {
		isJSONDetail(is, r)
	}
	a.run(t, id, []scenario{
		{name: "create", method: "POST", path: "/environments", token: tok, body: huge, wantStatus: 413, check: tooLarge},
		{name: "update", method: "PUT", path: "/environments/{id}", token: tok, body: `{"version": 1, "setup_script": "` + strings.Repeat("b", 4<<20) + `"}`,
			wantStatus: 413, check: tooLarge},
		{name: "nothing stored", method: "GET", path: "/environments/{id}", token: tok, wantStatus: 200,
			check: func(is *is.I, r response) {
				is.Equal(r.obj()["version"], float64(1)) // the oversized update did nothing
			}},
		{name: "just under the limit is not 413", method: "POST", path: "/environments", token: tok,
			body: `{"name": "big", "setup_script": "` + strings.Repeat("c", 4<<20-100) + `"}`, wantStatus: 201},
	})
}

func TestCORS(t *testing.T) {
	a := newAPI(t)
	tok := a.token("alice")
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
				r := sendWithHeaders(t, a, c.method, c.path, c.headers, nil)
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
			r := sendWithHeaders(t, a, "OPTIONS", c.path, map[string]string{
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
	is := is.New(t)
	a := newAPI(t)
	tok := a.token("alice")
	env := a.mustCreate("/environments", tok, map[string]any{"name": "e"})
	envID, _ := env["id"].(string)
	agent := a.mustCreate("/agents", tok, map[string]any{"name": "ag", "model": "local/shell", "runtime": "shell", "environment_id": envID})
	archived := a.do("POST", "/environments/"+envID+"/archive", tok, nil)
	is.Equal(archived.Status, 200) // archive
	versions := a.do("GET", "/environments/"+envID+"/versions", tok, nil)
	is.Equal(versions.Status, 200) // versions
	list := a.do("GET", "/agents", tok, nil)
	is.Equal(len(list.data()), 1) // the agent is listed

	objects := []map[string]any{env, agent, archived.obj(), list.data()[0].(map[string]any)}
	for _, v := range versions.data() {
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
	_, hasArchivedAt := archived.obj()["archived_at"].(string)
	is.True(hasArchivedAt) // the archived environment carried a timestamp to check
}
