package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/internal/testkit/apitest/openapicheck"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
)

// The OpenAPI document is checked here for what responses cannot show:
// that it is well-formed and compiles, that it names exactly the router's
// routes, which of them are public, and that the request bounds and value
// lists it states are the code's. That every response agrees with it is
// checked by every API test (apitest's Client).

// loadOpenAPI loads the embedded document, failing the test when it does
// not load.
func loadOpenAPI(t *testing.T) *openapicheck.Contract {
	t.Helper()
	c, err := openapicheck.Load(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newOpenAPIServer starts a server over a fresh store, without a session
// runner or UI.
func newOpenAPIServer(t *testing.T) *httptest.Server {
	t.Helper()
	db, err := store.Open(context.Background(), t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := httptest.NewServer(New(db, nil, Config{Version: "test"}))
	t.Cleanup(ts.Close)
	return ts
}

func TestOpenAPIDocumentLoads(t *testing.T) {
	t.Parallel()
	loadOpenAPI(t)
}

// routerParam is a parameter of a router path (":id"), which the document
// writes "{id}".
var routerParam = regexp.MustCompile(`:([A-Za-z_]+)`)

func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	c := loadOpenAPI(t)
	documented := map[string]bool{}
	for _, op := range c.Operations() {
		documented[op.Method+" "+op.Path] = true
	}
	routed := map[string]bool{}
	for _, rt := range (&Server{}).apiRoutes() {
		routed[rt.method+" "+routerParam.ReplaceAllString(rt.path, "{$1}")] = true
	}
	for k := range routed {
		if !documented[k] {
			t.Errorf("route %s is not in the OpenAPI document (server/openapi.json)", k)
		}
	}
	for k := range documented {
		if !routed[k] {
			t.Errorf("the OpenAPI document has %s, which the router does not serve", k)
		}
	}
}

// samplePath fills a template's parameters with a UUID that names
// nothing.
func samplePath(template string) string {
	return regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(template, "0190a2a4-0000-7000-8000-000000000000")
}

func TestOpenAPISecurityIsTheRouters(t *testing.T) {
	t.Parallel()
	c := loadOpenAPI(t)
	ts := newOpenAPIServer(t)
	for _, op := range c.Operations() {
		req, err := http.NewRequest(op.Method, ts.URL+samplePath(op.Path), nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if op.Public && res.StatusCode == http.StatusUnauthorized {
			t.Errorf("%s %s is public in the document, but the server wants a token", op.Method, op.Path)
		}
		if !op.Public && res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s needs a token in the document, but without one the server answers %d", op.Method, op.Path, res.StatusCode)
		}
		if err := c.Check(op.Method, samplePath(op.Path), res.StatusCode, res.Header.Get("Content-Type"), body); err != nil {
			t.Error(err)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	c := loadOpenAPI(t)
	ts := newOpenAPIServer(t)
	get := func(header map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/openapi.json", nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if err := c.Check(http.MethodGet, "/openapi.json", res.StatusCode, res.Header.Get("Content-Type"), body); err != nil {
			t.Error(err)
		}
		return res, body
	}

	res, body := get(nil) // no token
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json without a token: %d %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(body, openapiDoc) {
		t.Error("the served document is not the embedded one")
	}
	if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age") {
		t.Errorf("Cache-Control %q: the document should be cacheable", cc)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("the document should be readable from any origin, as the API is")
	}
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	res, body = get(map[string]string{"If-None-Match": etag, "Authorization": "Bearer aod_not_a_key"})
	if res.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("GET with If-None-Match: %d and %d bytes, want 304 and none", res.StatusCode, len(body))
	}
	res, _ = get(map[string]string{"If-None-Match": `"stale"`})
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET with a stale If-None-Match: %d, want 200", res.StatusCode)
	}
}

// schemaAt returns the document's value at a path of keys.
func schemaAt(t *testing.T, doc map[string]any, keys ...string) any {
	t.Helper()
	var v any = doc
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("the OpenAPI document has no %s", strings.Join(keys, "."))
		}
		v = m[k]
	}
	if v == nil {
		t.Fatalf("the OpenAPI document has no %s", strings.Join(keys, "."))
	}
	return v
}

// TestOpenAPIStatesTheCodesRules compares the value lists and request
// bounds the document states with the code's, which no response shows.
func TestOpenAPIStatesTheCodesRules(t *testing.T) {
	t.Parallel()
	var doc map[string]any
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := func(keys ...string) any {
		return schemaAt(t, doc, append([]string{"components", "schemas"}, keys...)...)
	}
	strs := func(v any) []string {
		var out []string
		for _, e := range v.([]any) {
			out = append(out, e.(string))
		}
		return out
	}
	lists := []struct {
		name      string
		got, want []string
	}{
		{"Runtime", strs(schemas("Runtime", "enum")), catalogue.RuntimeNames()},
		{"Provider", strs(schemas("Provider", "enum")), catalogue.ProviderNames()},
		{"PackageManager", strs(schemas("PackageManager", "enum")), store.PackageManagers},
		{"WebhookEvent", strs(schemas("WebhookEvent", "enum")), store.WebhookEvents},
	}
	for _, l := range lists {
		if !slices.Equal(l.got, l.want) {
			t.Errorf("components.schemas.%s.enum is %v, the code's is %v", l.name, l.got, l.want)
		}
	}
	bounds := []struct {
		keys []string
		want float64
	}{
		{[]string{"AgentCreate", "properties", "name", "maxLength"}, validate.MaxNameLen},
		{[]string{"AgentCreate", "properties", "model", "maxLength"}, validate.MaxModelLen},
		{[]string{"AgentUpdate", "properties", "name", "maxLength"}, validate.MaxNameLen},
		{[]string{"EnvironmentCreate", "properties", "name", "maxLength"}, validate.MaxNameLen},
		{[]string{"EnvironmentUpdate", "properties", "name", "maxLength"}, validate.MaxNameLen},
		{[]string{"ResourceInput", "properties", "mount_path", "maxLength"}, validate.MaxMountPathLen},
		{[]string{"ResourceInput", "properties", "checkout", "maxLength"}, validate.MaxCheckoutLen},
		{[]string{"SessionCreate", "properties", "budget_usd", "maximum"}, validate.MaxBudgetUSD},
		{[]string{"SessionCreate", "properties", "timeout", "default"}, validate.DefaultTimeout},
		{[]string{"APIKeyCreate", "properties", "name", "maxLength"}, store.MaxKeyNameLen},
		{[]string{"AdminAPIKeyCreate", "properties", "name", "maxLength"}, store.MaxKeyNameLen},
		{[]string{"APIKey", "properties", "name", "maxLength"}, store.MaxKeyNameLen},
		{[]string{"Username", "maxLength"}, store.MaxUsernameLen},
		{[]string{"Secret", "properties", "name", "maxLength"}, validate.MaxSecretNameLen},
		{[]string{"SecretPut", "properties", "value", "maxLength"}, validate.MaxSecretValueLen},
		{[]string{"SecretList", "properties", "data", "maxItems"}, store.MaxSecretsPerUser},
	}
	for _, b := range bounds {
		if got, _ := schemas(b.keys...).(float64); got != b.want {
			t.Errorf("components.schemas.%s is %v, the code's is %v", strings.Join(b.keys, "."), got, b.want)
		}
	}
	limit := 0.0
	for _, pv := range schemaAt(t, doc, "paths", "/sessions/{id}/events", "get", "parameters").([]any) {
		if p, _ := pv.(map[string]any); p["name"] == "limit" {
			limit, _ = p["schema"].(map[string]any)["maximum"].(float64)
		}
	}
	if got := schemaAt(t, doc, "components", "parameters", "SecretName", "schema", "maxLength"); got != float64(validate.MaxSecretNameLen) {
		t.Errorf("components.parameters.SecretName's maxLength is %v, the code's is %d", got, validate.MaxSecretNameLen)
	}
	if limit != maxEventsPage {
		t.Errorf("GET /sessions/{id}/events: the limit's maximum is %v, the code's is %d", limit, maxEventsPage)
	}
}
