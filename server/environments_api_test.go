package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aod/aod/internal/testkit/apitest"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/matryer/is"
	_ "modernc.org/sqlite" // the driver for poking rows the API cannot create yet
)

// missingEnvID is a well-formed UUID no environment has.
const missingEnvID = "00000000-0000-4000-8000-000000000000"

// envFieldKeys are exactly the keys of the environment shape (api.md §3).
var envFieldKeys = []string{"id", "type", "name", "packages", "setup_script", "networking", "version",
	"archived_at", "created_at", "updated_at"}

// envVersionKeys are the keys of an environment version (original-api.md §7.5).
var envVersionKeys = []string{"id", "type", "name", "packages", "setup_script", "networking", "version", "created_at"}

// sameKeys reports whether m has exactly the keys want.
func sameKeys(m map[string]any, want []string) bool {
	if len(m) != len(want) {
		return false
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

// hasNullKey reports whether m has key with a JSON null value.
func hasNullKey(m map[string]any, key string) bool {
	v, ok := m[key]
	return ok && v == nil
}

// envLocItem returns the 422 list item whose loc equals loc (ints may be
// given as Go ints), or nil.
func envLocItem(r apitest.Response, loc ...any) map[string]any {
	want := make([]any, len(loc))
	for i, l := range loc {
		if n, ok := l.(int); ok {
			want[i] = float64(n)
		} else {
			want[i] = l
		}
	}
	items, _ := r.Obj()["detail"].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		if reflect.DeepEqual(m["loc"], want) {
			return m
		}
	}
	return nil
}

// envWellFormed422 checks a 422 list detail: every item has the pydantic
// keys type, loc, msg and input.
func envWellFormed422(is *is.I, r apitest.Response) {
	items, ok := r.Obj()["detail"].([]any)
	is.True(ok && len(items) > 0) // 422 detail is a non-empty list
	for _, it := range items {
		m, _ := it.(map[string]any)
		_, hasType := m["type"]
		_, hasLoc := m["loc"].([]any)
		_, hasMsg := m["msg"].(string)
		_, hasInput := m["input"]
		is.True(hasType && hasLoc && hasMsg && hasInput) // item has type, loc, msg, input
	}
}

// wantLoc is a scenario check: a well-formed 422 naming loc.
func wantLoc(loc ...any) func(is *is.I, r apitest.Response) {
	return func(is *is.I, r apitest.Response) {
		envWellFormed422(is, r)
		is.True(envLocItem(r, loc...) != nil) // a 422 item names the field
	}
}

// envRawDB opens the server's SQLite file directly, for rows the API cannot
// create yet (sessions).
func envRawDB(t *testing.T, a *apitest.Server) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(a.Dir, "aod.db")+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// envInsertSession inserts a terminated session of username that uses envID
// and returns its id.
func envInsertSession(t *testing.T, db *sql.DB, username, envID string) string {
	t.Helper()
	var userID string
	if err := db.QueryRow(`SELECT id FROM users WHERE username = ?`, username).Scan(&userID); err != nil {
		t.Fatalf("find user %s: %v", username, err)
	}
	id := store.NewID()
	now := store.FormatTime(time.Now())
	if _, err := db.Exec(`INSERT INTO sessions(id, user_id, environment_id, runtime, provider, status, created_at, updated_at)
		VALUES (?, ?, ?, 'shell', 'local', 'terminated', ?, ?)`, id, userID, envID, now, now); err != nil {
		t.Fatalf("insert session: %v", err)
	}
	return id
}

// envSecrets decrypts an environment's env vars through the store.
func envSecrets(a *apitest.Server, username, envID string) (map[string]string, error) {
	u, err := a.DB.UserByName(context.Background(), username)
	if err != nil {
		return nil, err
	}
	return a.DB.EnvironmentSecrets(context.Background(), u.ID, envID)
}

func TestEnvironmentCreate(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	a.Run(t, "", []apitest.Scenario{
		{
			Name: "full", Method: "POST", Path: "/environments", Token: tok,
			Body: map[string]any{
				"name":         "full-env",
				"packages":     map[string]any{"pip": []any{"pytest", "requests==2.32.0"}, "npm": []any{"typescript"}, "cargo": []any{"ripgrep@14.0.0"}},
				"env_vars":     map[string]any{"FOO": "bar", "EMPTY": ""},
				"setup_script": "echo hello > /tmp/x",
				"networking":   map[string]any{"type": "unrestricted"},
			},
			WantStatus: http.StatusCreated,
			Check: func(is *is.I, r apitest.Response) {
				o := r.Obj()
				is.True(sameKeys(o, envFieldKeys))                                                                                                                // exactly the environment fields, no env_vars
				is.Equal(o["type"], "environment")                                                                                                                // type
				is.Equal(o["name"], "full-env")                                                                                                                   // name echoed
				is.Equal(o["packages"], map[string]any{"pip": []any{"pytest", "requests==2.32.0"}, "npm": []any{"typescript"}, "cargo": []any{"ripgrep@14.0.0"}}) // packages echoed
				is.Equal(o["setup_script"], "echo hello > /tmp/x")                                                                                                // setup_script echoed
				is.Equal(o["networking"], map[string]any{"type": "unrestricted"})                                                                                 // networking
				is.Equal(o["version"], float64(1))                                                                                                                // version 1
				is.True(hasNullKey(o, "archived_at"))                                                                                                             // archived_at null
				_, hasEnvVars := o["env_vars"]
				is.True(!hasEnvVars) // env_vars never in a response
			},
		},
		{
			Name: "minimal", Method: "POST", Path: "/environments", Token: tok,
			Body:       map[string]any{"name": "minimal-env"},
			WantStatus: http.StatusCreated,
			Check: func(is *is.I, r apitest.Response) {
				o := r.Obj()
				is.True(sameKeys(o, envFieldKeys))                                // the environment fields
				is.Equal(o["packages"], map[string]any{})                         // packages default {}
				is.True(hasNullKey(o, "setup_script"))                            // setup_script null
				is.Equal(o["networking"], map[string]any{"type": "unrestricted"}) // networking default
				is.Equal(o["version"], float64(1))                                // version 1
				is.True(hasNullKey(o, "archived_at"))                             // archived_at null
			},
		},
		{
			Name: "limited with hosts and extra keys", Method: "POST", Path: "/environments", Token: tok,
			Body: map[string]any{"name": "limited-env", "networking": map[string]any{
				"type": "limited", "allowed_hosts": []any{"api.example.com", "*.github.com"}, "allow_package_managers": true}},
			WantStatus: http.StatusCreated,
			Check: func(is *is.I, r apitest.Response) {
				want := map[string]any{"type": "limited", "allowed_hosts": []any{"api.example.com", "*.github.com"}, "allow_package_managers": true}
				is.Equal(r.Obj()["networking"], want) // limited networking echoed with hosts in order and extra keys
			},
		},
		{
			Name: "unrestricted drops other keys", Method: "POST", Path: "/environments", Token: tok,
			Body:       map[string]any{"name": "unrestricted-extra", "networking": map[string]any{"type": "unrestricted", "allowed_hosts": []any{"x.example"}}},
			WantStatus: http.StatusCreated,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["networking"], map[string]any{"type": "unrestricted"}) // unrestricted renders only its type
			},
		},
		{
			Name: "networking without type is unrestricted", Method: "POST", Path: "/environments", Token: tok,
			Body:       map[string]any{"name": "no-type", "networking": map[string]any{}},
			WantStatus: http.StatusCreated,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["networking"], map[string]any{"type": "unrestricted"}) // absent type means unrestricted
			},
		},
	})
}

func TestEnvironmentCreateValidation(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	post := func(name string, body any, status int, detail string, check func(*is.I, apitest.Response)) apitest.Scenario {
		return apitest.Scenario{Name: name, Method: "POST", Path: "/environments", Token: tok, Body: body,
			WantStatus: status, WantDetail: detail, Check: check}
	}
	a.Run(t, "", []apitest.Scenario{
		post("unknown package manager", map[string]any{"name": "e", "packages": map[string]any{"brew": []any{"wget"}}}, 422,
			"Unknown package manager: brew. Must be one of: ['apt', 'cargo', 'gem', 'go', 'npm', 'pip']", wantLoc("packages")),
		post("networking type invalid", map[string]any{"name": "e", "networking": map[string]any{"type": "open"}}, 422,
			"networking.type must be 'unrestricted' or 'limited'", wantLoc("networking")),
		post("networking type not a string", map[string]any{"name": "e", "networking": map[string]any{"type": 1}}, 422,
			"networking.type must be 'unrestricted' or 'limited'", wantLoc("networking")),
		post("allowed_hosts not a list", map[string]any{"name": "e", "networking": map[string]any{"type": "limited", "allowed_hosts": "api.example.com"}}, 422,
			"networking.allowed_hosts must be a list", wantLoc("networking")),
		post("limited without allowed_hosts", map[string]any{"name": "e", "networking": map[string]any{"type": "limited"}}, 422,
			"allowed_hosts", wantLoc("networking")),
		post("limited with empty allowed_hosts", map[string]any{"name": "e", "networking": map[string]any{"type": "limited", "allowed_hosts": []any{}}}, 422,
			"allowed_hosts", wantLoc("networking")),
		post("package list with a non-string", map[string]any{"name": "e", "packages": map[string]any{"pip": []any{"ok", 123}}}, 422,
			"", wantLoc("packages", "pip", 1)),
		post("package list with a non-string first", map[string]any{"name": "e", "packages": map[string]any{"pip": []any{123}}}, 422,
			"", wantLoc("packages", "pip", 0)),
		post("package value not a list", map[string]any{"name": "e", "packages": map[string]any{"pip": "pytest"}}, 422,
			"", wantLoc("packages", "pip")),
		post("packages not an object", map[string]any{"name": "e", "packages": []any{"pip"}}, 422,
			"", wantLoc("packages")),
		post("env var key with a dash", map[string]any{"name": "e", "env_vars": map[string]any{"BAD-KEY": "v"}}, 422,
			"Invalid env_var key 'BAD-KEY': must match [A-Za-z_][A-Za-z0-9_]*", wantLoc("env_vars")),
		post("env var key starting with a digit", map[string]any{"name": "e", "env_vars": map[string]any{"1ABC": "v"}}, 422,
			"1ABC", wantLoc("env_vars")),
		post("env var value not a string", map[string]any{"name": "e", "env_vars": map[string]any{"GOOD": 5}}, 422,
			"", wantLoc("env_vars", "GOOD")),
		post("env_vars not an object", map[string]any{"name": "e", "env_vars": []any{"A=1"}}, 422,
			"", wantLoc("env_vars")),
		post("name missing", map[string]any{"packages": map[string]any{}}, 422, "Field required", wantLoc("name")),
		post("name not a string", map[string]any{"name": 123}, 422, "Input should be a valid string", wantLoc("name")),
		post("name null", map[string]any{"name": nil}, 422, "", wantLoc("name")),
		post("name longer than 200", map[string]any{"name": strings.Repeat("n", 201)}, 422, "", wantLoc("name")),
		post("setup_script not a string", map[string]any{"name": "e", "setup_script": 5}, 422, "", wantLoc("setup_script")),
		post("networking not an object", map[string]any{"name": "e", "networking": "unrestricted"}, 422, "", wantLoc("networking")),
		post("invalid JSON", `{"name": "e",`, 400, "Invalid JSON", nil),
		post("empty body", "", 400, "Invalid JSON", nil),
		post("JSON array", `[{"name": "e"}]`, 400, "Invalid JSON", nil),
		post("trailing garbage", `{"name": "e"} x`, 400, "Invalid JSON", nil),
		{
			Name: "nothing was created", Method: "GET", Path: "/environments", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 0) // no rejected create stored a row
			},
		},
	})
	t.Run("invalid JSON detail is exact", func(t *testing.T) {
		is := is.New(t)
		r := a.Do("POST", "/environments", tok, `{nope`)
		is.Equal(r.Status, 400)                                     // status
		is.Equal(r.Obj(), map[string]any{"detail": "Invalid JSON"}) // exact body
	})
}

func TestEnvironmentNames(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	first := a.MustCreate("/environments", tok, map[string]any{"name": "dup"})
	a.MustCreate("/environments", tok, map[string]any{"name": "alpha"})
	beta := a.MustCreate("/environments", tok, map[string]any{"name": "beta"})
	gamma := a.MustCreate("/environments", tok, map[string]any{"name": "gamma"})
	a.Run(t, "", []apitest.Scenario{
		{Name: "duplicate active name", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{"name": "dup"},
			WantStatus: 409, Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "An active environment named 'dup' already exists"}) // exact 409 body
			}},
		{Name: "archive the first", Method: "POST", Path: "/environments/" + first["id"].(string) + "/archive", Token: tok, WantStatus: 200},
		{Name: "archived name is reusable", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{"name": "dup"},
			WantStatus: 201, Check: func(is *is.I, r apitest.Response) {
				is.True(r.Obj()["id"] != first["id"])    // a new environment
				is.Equal(r.Obj()["version"], float64(1)) // at version 1
			}},
		{Name: "name quoted like python repr", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{"name": "it's"},
			WantStatus: 201},
		{Name: "duplicate name with a quote", Method: "POST", Path: "/environments", Token: tok, Body: map[string]any{"name": "it's"},
			WantStatus: 409, WantDetail: `An active environment named "it's" already exists`},
		{Name: "rename onto an active name", Method: "PUT", Path: "/environments/" + beta["id"].(string), Token: tok,
			Body: map[string]any{"version": 1, "name": "alpha", "setup_script": "echo changed"}, WantStatus: 409,
			WantDetail: "An active environment named 'alpha' already exists"},
		{Name: "nothing changed", Method: "GET", Path: "/environments/" + beta["id"].(string), Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["name"], "beta")            // name unchanged
				is.Equal(r.Obj()["version"], float64(1))     // version unchanged
				is.True(hasNullKey(r.Obj(), "setup_script")) // the rest of the rejected PUT was not applied
			}},
		{Name: "no version snapshot for the rejected rename", Method: "GET", Path: "/environments/" + beta["id"].(string) + "/versions", Token: tok,
			WantStatus: 200, Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 1) // only version 1
			}},
		{Name: "archive gamma", Method: "POST", Path: "/environments/" + gamma["id"].(string) + "/archive", Token: tok, WantStatus: 200},
		{Name: "rename onto an archived name", Method: "PUT", Path: "/environments/" + beta["id"].(string), Token: tok,
			Body: map[string]any{"version": 1, "name": "gamma"}, WantStatus: 200, Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["name"], "gamma")       // renamed
				is.Equal(r.Obj()["version"], float64(2)) // rename bumps the version
			}},
		{Name: "renaming to its own name is a no-op", Method: "PUT", Path: "/environments/" + beta["id"].(string), Token: tok,
			Body: map[string]any{"version": 2, "name": "gamma"}, WantStatus: 200, Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["version"], float64(2)) // same name keeps the version
			}},
	})
}

func TestEnvironmentGet(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	created := a.MustCreate("/environments", tok, map[string]any{"name": "e", "env_vars": map[string]any{"K": "v"},
		"packages": map[string]any{"apt": []any{"jq"}}})
	id := created["id"].(string)
	a.Run(t, id, []apitest.Scenario{
		{Name: "get", Method: "GET", Path: "/environments/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), created) // GET returns what create returned
				_, has := r.Obj()["env_vars"]
				is.True(!has) // no env_vars
			}},
		{Name: "uppercase id", Method: "GET", Path: "/environments/" + strings.ToUpper(id), Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["id"], id) // ids match case-insensitively and come back lowercase
			}},
		{Name: "unknown", Method: "GET", Path: "/environments/" + missingEnvID, Token: tok, WantStatus: 404,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Environment not found"}) // exact 404 body
			}},
		{Name: "not a uuid", Method: "GET", Path: "/environments/not-a-uuid", Token: tok, WantStatus: 404},
		{Name: "uuid without hyphens", Method: "GET", Path: "/environments/" + strings.ReplaceAll(missingEnvID, "-", ""), Token: tok, WantStatus: 404},
	})
}

func TestEnvironmentList(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	alice, bob, carol := a.Token("alice"), a.Token("bob"), a.Token("carol")
	e1 := a.MustCreate("/environments", alice, map[string]any{"name": "one", "env_vars": map[string]any{"K": "v"}})["id"]
	e2 := a.MustCreate("/environments", alice, map[string]any{"name": "two"})["id"]
	e3 := a.MustCreate("/environments", alice, map[string]any{"name": "three"})["id"]
	b1 := a.MustCreate("/environments", bob, map[string]any{"name": "one"})["id"]
	if r := a.Do("POST", "/environments/"+e2.(string)+"/archive", alice, nil); r.Status != 200 {
		t.Fatalf("archive: %d %s", r.Status, r.Raw)
	}
	ids := func(r apitest.Response) []any {
		var out []any
		for _, it := range r.Data() {
			m, _ := it.(map[string]any)
			out = append(out, m["id"])
		}
		return out
	}
	a.Run(t, "", []apitest.Scenario{
		{Name: "caller's non-archived, newest first", Method: "GET", Path: "/environments", Token: alice, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(ids(r), []any{e3, e1}) // archived two hidden, bob's hidden, newest first
				for _, it := range r.Data() {
					m, _ := it.(map[string]any)
					is.True(sameKeys(m, envFieldKeys)) // list items are environments without env_vars
				}
			}},
		{Name: "other user sees only theirs", Method: "GET", Path: "/environments", Token: bob, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(ids(r), []any{b1}) // only bob's
			}},
		{Name: "empty list is an empty array", Method: "GET", Path: "/environments", Token: carol, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(string(bytes.TrimSpace(r.Raw)), `{"data":[]}`) // data is [] not null, and nothing else
			}},
		{Name: "query parameters are ignored", Method: "GET", Path: "/environments?limit=1&archived=true", Token: alice, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(ids(r), []any{e3, e1}) // same list
			}},
	})
}

func TestEnvironmentUpdate(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	env := a.MustCreate("/environments", tok, map[string]any{"name": "upd", "packages": map[string]any{"pip": []any{"pytest"}},
		"env_vars": map[string]any{"A": "1", "B": "2"}, "setup_script": "echo 1"})
	id := env["id"].(string)
	version := func(want int) func(is *is.I, r apitest.Response) {
		return func(is *is.I, r apitest.Response) {
			is.Equal(r.Obj()["version"], float64(want)) // version
			_, has := r.Obj()["env_vars"]
			is.True(!has) // no env_vars
		}
	}
	put := func(name string, body any, status int, detail string, check func(*is.I, apitest.Response)) apitest.Scenario {
		return apitest.Scenario{Name: name, Method: "PUT", Path: "/environments/{id}", Token: tok, Body: body,
			WantStatus: status, WantDetail: detail, Check: check}
	}
	a.Run(t, id, []apitest.Scenario{
		put("packages bump the version", map[string]any{"version": 1, "packages": map[string]any{"pip": []any{"pytest", "black"}}}, 200, "",
			func(is *is.I, r apitest.Response) {
				version(2)(is, r)
				is.Equal(r.Obj()["packages"], map[string]any{"pip": []any{"pytest", "black"}}) // packages replaced
				is.Equal(r.Obj()["setup_script"], "echo 1")                                    // untouched field unchanged
				is.Equal(r.Obj()["name"], "upd")                                               // name unchanged
				is.Equal(r.Obj()["created_at"], env["created_at"])                             // created_at kept
			}),
		put("stale version", map[string]any{"version": 1, "setup_script": "echo stale"}, 409, "", func(is *is.I, r apitest.Response) {
			is.Equal(r.Obj(), map[string]any{"detail": "Version mismatch: expected 2, got 1"}) // exact 409 body
		}),
		put("future version", map[string]any{"version": 7}, 409, "Version mismatch: expected 2, got 7", nil),
		put("same packages is a no-op", map[string]any{"version": 2, "packages": map[string]any{"pip": []any{"pytest", "black"}}}, 200, "", version(2)),
		put("only the version is a no-op", map[string]any{"version": 2}, 200, "", version(2)),
		put("null fields are left alone", map[string]any{"version": 2, "name": nil, "packages": nil, "env_vars": nil, "setup_script": nil, "networking": nil}, 200, "",
			func(is *is.I, r apitest.Response) {
				version(2)(is, r)
				is.Equal(r.Obj()["setup_script"], "echo 1") // null setup_script leaves it
			}),
		put("identical networking keeps the version", map[string]any{"version": 2, "networking": map[string]any{"type": "unrestricted"}}, 200, "", version(2)),
		put("networking change bumps", map[string]any{"version": 2, "networking": map[string]any{"type": "limited", "allowed_hosts": []any{"pypi.org"}}}, 200, "",
			func(is *is.I, r apitest.Response) {
				version(3)(is, r)
				is.Equal(r.Obj()["networking"], map[string]any{"type": "limited", "allowed_hosts": []any{"pypi.org"}}) // networking replaced
			}),
		put("identical limited networking keeps", map[string]any{"version": 3, "networking": map[string]any{"type": "limited", "allowed_hosts": []any{"pypi.org"}}}, 200, "", version(3)),
		put("changed hosts bump", map[string]any{"version": 3, "networking": map[string]any{"type": "limited", "allowed_hosts": []any{"pypi.org", "files.pythonhosted.org"}}}, 200, "", version(4)),
		put("setup_script change bumps", map[string]any{"version": 4, "setup_script": "echo 2"}, 200, "", func(is *is.I, r apitest.Response) {
			version(5)(is, r)
			is.Equal(r.Obj()["setup_script"], "echo 2") // setup_script replaced
		}),
		put("empty setup_script clears it", map[string]any{"version": 5, "setup_script": ""}, 200, "", func(is *is.I, r apitest.Response) {
			version(6)(is, r)
			is.True(hasNullKey(r.Obj(), "setup_script")) // cleared script is null
		}),
		put("packages replace the whole map", map[string]any{"version": 6, "packages": map[string]any{"npm": []any{"typescript"}}}, 200, "", func(is *is.I, r apitest.Response) {
			version(7)(is, r)
			is.Equal(r.Obj()["packages"], map[string]any{"npm": []any{"typescript"}}) // pip gone
		}),
		put("env_vars change bumps and replaces the map", map[string]any{"version": 7, "env_vars": map[string]any{"B": "20", "C": ""}}, 200, "", func(is *is.I, r apitest.Response) {
			version(8)(is, r)
			vars, err := envSecrets(a, "alice", id)
			is.NoErr(err)                                         // decrypt env vars
			is.Equal(vars, map[string]string{"B": "20", "C": ""}) // A removed, B replaced, C kept empty
		}),
		put("same env_vars is a no-op", map[string]any{"version": 8, "env_vars": map[string]any{"C": "", "B": "20"}}, 200, "", version(8)),
		put("empty env_vars clears", map[string]any{"version": 8, "env_vars": map[string]any{}}, 200, "", func(is *is.I, r apitest.Response) {
			version(9)(is, r)
			vars, err := envSecrets(a, "alice", id)
			is.NoErr(err)          // decrypt env vars
			is.Equal(len(vars), 0) // no env vars left
		}),
		put("version missing", map[string]any{"setup_script": "x"}, 422, "Field required", wantLoc("version")),
		put("version not an integer", map[string]any{"version": "abc"}, 422, "", wantLoc("version")),
		put("version fractional", map[string]any{"version": 9.5}, 422, "", wantLoc("version")),
		put("invalid JSON", `{"version": 9,`, 400, "Invalid JSON", nil),
		put("empty body", "", 400, "Invalid JSON", nil),
		put("allowed_hosts not a list", map[string]any{"version": 9, "networking": map[string]any{"type": "limited", "allowed_hosts": "pypi.org"}}, 422,
			"networking.allowed_hosts must be a list", wantLoc("networking")),
		put("limited without hosts", map[string]any{"version": 9, "networking": map[string]any{"type": "limited"}}, 422, "allowed_hosts", wantLoc("networking")),
		put("networking type invalid", map[string]any{"version": 9, "networking": map[string]any{"type": "none"}}, 422,
			"networking.type must be 'unrestricted' or 'limited'", wantLoc("networking")),
		put("unknown package manager", map[string]any{"version": 9, "packages": map[string]any{"brew": []any{}}}, 422, "Unknown package manager", wantLoc("packages")),
		put("package not a string", map[string]any{"version": 9, "packages": map[string]any{"pip": []any{true}}}, 422, "", wantLoc("packages", "pip", 0)),
		put("bad env var key", map[string]any{"version": 9, "env_vars": map[string]any{"BAD-KEY": "x"}}, 422, "BAD-KEY", wantLoc("env_vars")),
		put("name not a string", map[string]any{"version": 9, "name": 5}, 422, "", wantLoc("name")),
		put("setup_script not a string", map[string]any{"version": 9, "setup_script": []any{}}, 422, "", wantLoc("setup_script")),
		{Name: "rejected updates changed nothing", Method: "GET", Path: "/environments/{id}", Token: tok, WantStatus: 200, Check: version(9)},
		{Name: "every change has a snapshot", Method: "GET", Path: "/environments/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 9) // versions 1..9
			}},
		{Name: "unknown", Method: "PUT", Path: "/environments/" + missingEnvID, Token: tok, Body: map[string]any{"version": 1}, WantStatus: 404,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Environment not found"}) // exactly Environment not found
			}},
		{Name: "not a uuid", Method: "PUT", Path: "/environments/nope", Token: tok, Body: map[string]any{"version": 1}, WantStatus: 404,
			WantDetail: "Environment not found"},
	})
}

func TestEnvironmentArchive(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	env := a.MustCreate("/environments", tok, map[string]any{"name": "arch", "setup_script": "echo"})
	a.Run(t, env["id"].(string), []apitest.Scenario{
		{Name: "archive", Method: "POST", Path: "/environments/{id}/archive", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				o := r.Obj()
				is.True(sameKeys(o, envFieldKeys)) // environment shape
				s, _ := o["archived_at"].(string)
				is.True(wireTimePattern.MatchString(s)) // archived_at set to a timestamp
				is.Equal(o["version"], float64(1))      // archiving is not a new version
				is.Equal(o["setup_script"], "echo")     // content unchanged
			}},
		{Name: "archived is still readable", Method: "GET", Path: "/environments/{id}", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.True(r.Obj()["archived_at"] != nil) // GET shows archived_at
			}},
		{Name: "archive again", Method: "POST", Path: "/environments/{id}/archive", Token: tok, WantStatus: 409,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Environment is already archived"}) // exact 409 body
			}},
		{Name: "update archived", Method: "PUT", Path: "/environments/{id}", Token: tok, Body: map[string]any{"version": 1, "name": "x"},
			WantStatus: 409, Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Cannot update an archived environment"}) // exact 409 body
			}},
		{Name: "update archived with invalid JSON", Method: "PUT", Path: "/environments/{id}", Token: tok, Body: `{not json`,
			WantStatus: 409, WantDetail: "Cannot update an archived environment"},
		{Name: "update archived with an invalid body", Method: "PUT", Path: "/environments/{id}", Token: tok, Body: map[string]any{"name": 5},
			WantStatus: 409, WantDetail: "Cannot update an archived environment"},
		{Name: "update archived with a stale version", Method: "PUT", Path: "/environments/{id}", Token: tok, Body: map[string]any{"version": 99},
			WantStatus: 409, WantDetail: "Cannot update an archived environment"},
		{Name: "archive unknown", Method: "POST", Path: "/environments/" + missingEnvID + "/archive", Token: tok, WantStatus: 404,
			WantDetail: "Environment not found"},
		{Name: "archive non-uuid", Method: "POST", Path: "/environments/xyz/archive", Token: tok, WantStatus: 404},
	})
}

func TestEnvironmentDelete(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	env := a.MustCreate("/environments", tok, map[string]any{"name": "del"})
	id := env["id"].(string)
	agent := a.MustCreate("/agents", tok, map[string]any{"name": "ag", "model": "local/shell", "runtime": "shell", "environment_id": id})
	archived := a.MustCreate("/environments", tok, map[string]any{"name": "old"})
	a.Run(t, id, []apitest.Scenario{
		{Name: "agent uses it", Method: "GET", Path: "/agents/" + agent["id"].(string), Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj()["environment_id"], id) // precondition: the agent's default env
			}},
		{Name: "POST to delete", Method: "POST", Path: "/environments/{id}/delete", Token: tok, WantStatus: 405,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405
				is.True(strings.Contains(r.Header.Get("Allow"), "DELETE"))        // Allow names DELETE
			}},
		{Name: "GET to delete", Method: "GET", Path: "/environments/{id}/delete", Token: tok, WantStatus: 405, WantDetail: "Method not allowed"},
		{Name: "DELETE the resource path", Method: "DELETE", Path: "/environments/{id}", Token: tok, WantStatus: 405,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Method not allowed"}) // JSON 405
				is.True(r.Header.Get("Allow") != "")                              // Allow header
			}},
		{Name: "PATCH the collection", Method: "PATCH", Path: "/environments", Token: tok, Body: map[string]any{}, WantStatus: 405,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Method not allowed"}) // exactly Method not allowed
			}},
		{Name: "still there after the 405s", Method: "GET", Path: "/environments/{id}", Token: tok, WantStatus: 200},
		{Name: "delete", Method: "DELETE", Path: "/environments/{id}/delete", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Environment deleted"}) // exact body
			}},
		{Name: "gone", Method: "GET", Path: "/environments/{id}", Token: tok, WantStatus: 404, WantDetail: "Environment not found"},
		{Name: "versions gone", Method: "GET", Path: "/environments/{id}/versions", Token: tok, WantStatus: 404},
		{Name: "not listed", Method: "GET", Path: "/environments", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				for _, it := range r.Data() {
					is.True(it.(map[string]any)["id"] != id) // deleted env not listed
				}
			}},
		{Name: "agent lost its default", Method: "GET", Path: "/agents/" + agent["id"].(string), Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.True(hasNullKey(r.Obj(), "environment_id")) // environment_id null
			}},
		{Name: "agent versions lost it too", Method: "GET", Path: "/agents/" + agent["id"].(string) + "/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 1)                                          // the agent's one version
				is.True(hasNullKey(r.Data()[0].(map[string]any), "environment_id")) // snapshot's environment_id null
			}},
		{Name: "delete again", Method: "DELETE", Path: "/environments/{id}/delete", Token: tok, WantStatus: 404,
			WantDetail: "Environment not found"},
		{Name: "delete unknown", Method: "DELETE", Path: "/environments/" + missingEnvID + "/delete", Token: tok, WantStatus: 404,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), map[string]any{"detail": "Environment not found"}) // exact 404
			}},
		{Name: "delete non-uuid", Method: "DELETE", Path: "/environments/zzz/delete", Token: tok, WantStatus: 404},
		{Name: "archive another", Method: "POST", Path: "/environments/" + archived["id"].(string) + "/archive", Token: tok, WantStatus: 200},
		{Name: "archived environments can be deleted", Method: "DELETE", Path: "/environments/" + archived["id"].(string) + "/delete", Token: tok,
			WantStatus: 200, WantDetail: "Environment deleted"},
	})
}

func TestEnvironmentDeleteWithSessions(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	id := a.MustCreate("/environments", tok, map[string]any{"name": "busy"})["id"].(string)
	db := envRawDB(t, a)
	sessionID := envInsertSession(t, db, "alice", id)

	r := a.Do("DELETE", "/environments/"+id+"/delete", tok, nil)
	is.Equal(r.Status, 409)                                                                         // refused while a session references it
	is.Equal(r.Obj(), map[string]any{"detail": "Cannot delete environment with existing sessions"}) // exact 409 body
	is.Equal(a.Do("GET", "/environments/"+id, tok, nil).Status, 200)                                // still there

	_, err := db.Exec(`DELETE FROM sessions WHERE id = ?`, sessionID)
	is.NoErr(err) // remove the session
	r = a.Do("DELETE", "/environments/"+id+"/delete", tok, nil)
	is.Equal(r.Status, 200) // a deleted session no longer counts
}

func TestEnvironmentVersions(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	env := a.MustCreate("/environments", tok, map[string]any{"name": "v", "packages": map[string]any{"pip": []any{"a"}},
		"env_vars": map[string]any{"S": "secret"}})
	id := env["id"].(string)
	for i, body := range []map[string]any{
		{"version": 1, "packages": map[string]any{"pip": []any{"b"}}},
		{"version": 2, "name": "v-renamed", "networking": map[string]any{"type": "limited", "allowed_hosts": []any{"h.example"}}},
	} {
		if r := a.Do("PUT", "/environments/"+id, tok, body); r.Status != 200 {
			t.Fatalf("update %d: %d %s", i, r.Status, r.Raw)
		}
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "newest first", Method: "GET", Path: "/environments/{id}/versions", Token: tok, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				items := r.Data()
				is.Equal(len(items), 3) // three versions
				var versions []any
				for _, it := range items {
					m := it.(map[string]any)
					versions = append(versions, m["version"])
					is.True(sameKeys(m, envVersionKeys)) // version item shape: no env_vars, archived_at or updated_at
					is.Equal(m["id"], id)                // id is the environment's
					is.Equal(m["type"], "environment")   // type
				}
				is.Equal(versions, []any{float64(3), float64(2), float64(1)}) // highest first
				v3, v2, v1 := items[0].(map[string]any), items[1].(map[string]any), items[2].(map[string]any)
				is.Equal(v3["name"], "v-renamed")                                                                  // v3 has the new name
				is.Equal(v3["networking"], map[string]any{"type": "limited", "allowed_hosts": []any{"h.example"}}) // v3 networking
				is.Equal(v2["packages"], map[string]any{"pip": []any{"b"}})                                        // v2 packages
				is.Equal(v2["networking"], map[string]any{"type": "unrestricted"})                                 // v2 networking
				is.Equal(v1["packages"], map[string]any{"pip": []any{"a"}})                                        // v1 packages
				is.Equal(v1["name"], "v")                                                                          // v1 name
				is.True(hasNullKey(v1, "setup_script"))                                                            // empty script is null
			}},
		{Name: "unknown", Method: "GET", Path: "/environments/" + missingEnvID + "/versions", Token: tok, WantStatus: 404,
			WantDetail: "Environment not found"},
		{Name: "non-uuid", Method: "GET", Path: "/environments/abc/versions", Token: tok, WantStatus: 404},
	})
}

func TestEnvironmentOwnership(t *testing.T) {
	t.Parallel()
	a := apitest.New(t, recording)
	alice, bob := a.Token("alice"), a.Token("bob")
	env := a.MustCreate("/environments", alice, map[string]any{"name": "mine"})
	id := env["id"].(string)
	bobAgent := a.MustCreate("/agents", bob, map[string]any{"name": "b", "model": "local/shell", "runtime": "shell"})
	notFound := func(is *is.I, r apitest.Response) {
		is.Equal(r.Obj(), map[string]any{"detail": "Environment not found"}) // indistinguishable from missing
	}
	a.Run(t, id, []apitest.Scenario{
		{Name: "get", Method: "GET", Path: "/environments/{id}", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "put", Method: "PUT", Path: "/environments/{id}", Token: bob, Body: map[string]any{"version": 1, "name": "stolen"}, WantStatus: 404, Check: notFound},
		{Name: "archive", Method: "POST", Path: "/environments/{id}/archive", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "delete", Method: "DELETE", Path: "/environments/{id}/delete", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "versions", Method: "GET", Path: "/environments/{id}/versions", Token: bob, WantStatus: 404, Check: notFound},
		{Name: "not in bob's list", Method: "GET", Path: "/environments", Token: bob, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(len(r.Data()), 0) // bob has none
			}},
		{Name: "bob can create the same name", Method: "POST", Path: "/environments", Token: bob, Body: map[string]any{"name": "mine"}, WantStatus: 201},
		{Name: "attach on agent create", Method: "POST", Path: "/agents", Token: bob,
			Body: map[string]any{"name": "b2", "model": "local/shell", "runtime": "shell", "environment_id": id}, WantStatus: 404,
			WantDetail: "Environment not found"},
		{Name: "attach on agent update", Method: "PUT", Path: "/agents/" + bobAgent["id"].(string), Token: bob,
			Body: map[string]any{"version": 1, "environment_id": id}, WantStatus: 404, WantDetail: "Environment not found"},
		{Name: "alice's environment untouched", Method: "GET", Path: "/environments/{id}", Token: alice, WantStatus: 200,
			Check: func(is *is.I, r apitest.Response) {
				is.Equal(r.Obj(), env) // same as created: not renamed, archived or deleted
			}},
	})
}

// TestEnvironmentSecretsNeverExposed proves env var values never leave the
// server and never reach the disk in plaintext.
func TestEnvironmentSecretsNeverExposed(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value-XYZ"
	const secretNumber = "7331733173317331"
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")

	var responses []apitest.Response
	call := func(method, path string, body any, want int) apitest.Response {
		t.Helper()
		r := a.Do(method, path, tok, body)
		if r.Status != want {
			t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Raw)
		}
		responses = append(responses, r)
		return r
	}

	created := call("POST", "/environments", map[string]any{"name": "sec", "env_vars": map[string]any{"API_TOKEN": secret}}, 201)
	id, _ := created.Obj()["id"].(string)
	call("GET", "/environments/"+id, nil, 200)
	call("GET", "/environments", nil, 200)
	call("PUT", "/environments/"+id, map[string]any{"version": 1, "env_vars": map[string]any{"API_TOKEN": secret, "OTHER": secret + "-2"}}, 200)
	call("PUT", "/environments/"+id, map[string]any{"version": 1, "env_vars": map[string]any{"API_TOKEN": secret}}, 409)
	call("GET", "/environments/"+id+"/versions", nil, 200)
	call("POST", "/environments", map[string]any{"env_vars": map[string]any{"API_TOKEN": secret}}, 422)
	call("POST", "/environments", map[string]any{"name": "n", "env_vars": map[string]any{"API_TOKEN": secret, "NUM": 7331733173317331}}, 422)
	call("POST", "/environments", map[string]any{"name": "n", "env_vars": secret}, 422)
	call("POST", "/environments", map[string]any{"name": "n", "env_vars": []any{secret}}, 422)
	call("POST", "/environments", map[string]any{"name": "n", "env_vars": map[string]any{"BAD-KEY": secret}}, 422)
	call("POST", "/environments", map[string]any{"name": "n", "env_vars": map[string]any{"API_TOKEN": secret}, "packages": "x"}, 422)
	call("PUT", "/environments/"+id, map[string]any{"env_vars": map[string]any{"API_TOKEN": secret}}, 422)
	call("PUT", "/environments/"+id, map[string]any{"version": 2, "env_vars": map[string]any{"API_TOKEN": secret, "N": 7331733173317331}}, 422)
	call("POST", "/environments/"+id+"/archive", nil, 200)

	for _, r := range responses {
		is.True(!bytes.Contains(r.Raw, []byte(secret)))       // secret value never in a response body
		is.True(!bytes.Contains(r.Raw, []byte(secretNumber))) // nor a non-string env var value
		for _, vals := range r.Header {
			is.True(!strings.Contains(strings.Join(vals, " "), secret)) // nor in a header
		}
	}

	vars, err := envSecrets(a, "alice", id)
	is.NoErr(err)                                                                  // decrypt env vars
	is.Equal(vars, map[string]string{"API_TOKEN": secret, "OTHER": secret + "-2"}) // the store decrypts what was sent

	files, err := filepath.Glob(filepath.Join(a.Dir, "aod.db*"))
	is.NoErr(err)           // list the database files
	is.True(len(files) > 0) // the database is on disk
	for _, f := range files {
		b, err := os.ReadFile(f)
		is.NoErr(err)                               // read the database file
		is.True(!bytes.Contains(b, []byte(secret))) // no plaintext secret in the database files
	}
}

// A 422 is linear in the request and bounded: each unknown package manager
// echoes its own key (it used to echo the whole object, so a 59 KB request
// answered 355 MB), and the list stops at validate.MaxErrors with a count.
func TestEnvironmentHostile422IsBounded(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	a := apitest.New(t, recording)
	tok := a.Token("alice")
	pkgs := map[string]any{}
	for i := range 4000 {
		pkgs[fmt.Sprintf("manager%04d", i)] = []any{"x"}
	}
	req, _ := json.Marshal(map[string]any{"name": "e", "packages": pkgs})
	r := a.Do("POST", "/environments", tok, req)
	is.Equal(r.Status, http.StatusUnprocessableEntity) // refused
	items, _ := r.Obj()["detail"].([]any)
	is.Equal(len(items), validate.MaxErrors+1) // the first problems and a count of the rest
	is.True(len(r.Raw) < len(req))             // smaller than the request
}
