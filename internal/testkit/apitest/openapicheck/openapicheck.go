// Package openapicheck holds aod's OpenAPI document to account in tests:
// Load checks that the document is well-formed OpenAPI 3.1 and compiles
// every schema in it (JSON Schema 2020-12), and a Contract then says
// whether a response the server gave is one the document describes.
//
// It knows nothing of the server: it takes the document's bytes, so the
// server's own tests can use it as well as apitest.
package openapicheck

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// docURL is the name the document goes by inside the schema compiler. It
// is never fetched: every reference in the document is local.
const docURL = "https://aod.invalid/openapi.json"

// methods are the operation keys of an OpenAPI path item.
var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// Operation is one method of one path of the document.
type Operation struct {
	Method string // upper case, e.g. "GET"
	Path   string // the template, e.g. "/agents/{id}"
	Public bool   // security is [] : no credentials needed
}

// response is what the document says of one status of one operation.
type response struct {
	media map[string]*jsonschema.Schema // media type -> schema of a JSON body (nil for other bodies)
	event *jsonschema.Schema            // text/event-stream: the schema of each event's data
}

// template is a path of the document split into segments; a segment in
// braces matches any one non-empty segment.
type template struct {
	path     string
	segments []string
	literals int // how many segments are not parameters, to prefer "/a/b" over "/a/{x}"
	ops      map[string]map[int]*response
}

// Contract is a loaded document, ready to check responses against. It is
// safe for concurrent use.
type Contract struct {
	templates []*template
	ops       []Operation
	errSchema *jsonschema.Schema // the body of a 404 or 405 the router answers itself
}

// Load parses doc, checks its structure and compiles every schema in it.
// The error lists every problem found.
func Load(doc []byte) (*Contract, error) {
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("openapi document: not JSON: %w", err)
	}
	root, ok := raw.(map[string]any)
	if !ok {
		return nil, errors.New("openapi document: not a JSON object")
	}
	l := &loader{root: root, c: jsonschema.NewCompiler(), seen: map[string]bool{}}
	l.c.DefaultDraft(jsonschema.Draft2020)
	// Formats are asserted, not only noted: a timestamp must be a date-time,
	// an id a UUID, a URL a URI.
	l.c.AssertFormat()
	if err := l.c.AddResource(docURL, raw); err != nil {
		return nil, err
	}
	contract := l.load()
	if len(l.problems) > 0 {
		return nil, fmt.Errorf("openapi document:\n  %s", strings.Join(l.problems, "\n  "))
	}
	return contract, nil
}

// loader walks the document, noting problems as it goes.
type loader struct {
	root     map[string]any
	c        *jsonschema.Compiler
	problems []string
	seen     map[string]bool // compile errors reported, each once
}

func (l *loader) fail(format string, args ...any) {
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// compile compiles the schema at pointer ptr of the document (nil and a
// problem when it does not compile).
func (l *loader) compile(ptr string) *jsonschema.Schema {
	s, err := l.c.Compile(docURL + "#" + ptr)
	if err != nil {
		// A broken schema fails every schema that refers to it: say so once.
		if msg := err.Error(); !l.seen[msg] {
			l.seen[msg] = true
			l.fail("schema %s: %v", ptr, err)
		}
		return nil
	}
	return s
}

// pointer joins JSON pointer tokens, escaped.
func pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}

// lookup returns the value at a local JSON pointer of the document.
func (l *loader) lookup(ptr string) (any, bool) {
	var v any = l.root
	if ptr == "" {
		return v, true
	}
	for _, t := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		t = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[t]; !ok {
			return nil, false
		}
	}
	return v, true
}

// deref follows an object's $ref (a Reference Object's; local only) and
// returns the object it names and that object's pointer.
func (l *loader) deref(v any, ptr string) (map[string]any, string) {
	for range 8 {
		m, ok := v.(map[string]any)
		if !ok {
			l.fail("%s: not an object", ptr)
			return nil, ptr
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr
		}
		if !strings.HasPrefix(ref, "#/") {
			l.fail("%s: $ref %q is not local", ptr, ref)
			return nil, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
		if v, ok = l.lookup(ptr); !ok {
			l.fail("%s: $ref %q names nothing", ptr, ref)
			return nil, ptr
		}
	}
	l.fail("%s: $ref chain too long", ptr)
	return nil, ptr
}

var (
	statusKey = regexp.MustCompile(`^[1-5][0-9][0-9]$`)
	paramRE   = regexp.MustCompile(`^\{([A-Za-z_][A-Za-z0-9_]*)\}$`)
)

func (l *loader) load() *Contract {
	if v, _ := l.root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		l.fail("openapi is %q, want 3.1.x", v)
	}
	info, _ := l.root["info"].(map[string]any)
	if t, _ := info["title"].(string); t == "" {
		l.fail("info.title is missing")
	}
	if v, _ := info["version"].(string); v == "" {
		l.fail("info.version is missing")
	}
	components, _ := l.root["components"].(map[string]any)
	schemes, _ := components["securitySchemes"].(map[string]any)
	l.checkSecurity(l.root["security"], "/security", schemes)

	// Every named schema compiles, used or not.
	schemas, _ := components["schemas"].(map[string]any)
	for _, name := range sortedKeys(schemas) {
		l.compile(pointer("components", "schemas", name))
	}
	// Every $ref anywhere names something.
	l.checkRefs(l.root, "")

	c := &Contract{errSchema: l.compile(pointer("components", "schemas", "Error"))}
	paths, ok := l.root["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		l.fail("paths is missing")
	}
	operationIDs := map[string]string{}
	for _, p := range sortedKeys(paths) {
		item, itemPtr := l.deref(paths[p], pointer("paths", p))
		if item == nil {
			continue
		}
		if !strings.HasPrefix(p, "/") || (len(p) > 1 && strings.HasSuffix(p, "/")) {
			l.fail("path %q must start with / and not end with one", p)
		}
		tp := &template{path: p, segments: strings.Split(p, "/")[1:], ops: map[string]map[int]*response{}}
		var names []string
		for _, s := range tp.segments {
			if m := paramRE.FindStringSubmatch(s); m != nil {
				names = append(names, m[1])
			} else if strings.ContainsAny(s, "{}") {
				l.fail("path %q: segment %q is neither literal nor one parameter", p, s)
			} else {
				tp.literals++
			}
		}
		shared := l.params(item["parameters"], itemPtr+"/parameters")
		for _, method := range methods {
			opv, ok := item[method]
			if !ok {
				continue
			}
			opPtr := itemPtr + pointer(method)
			op, _ := opv.(map[string]any)
			if op == nil {
				l.fail("%s: not an object", opPtr)
				continue
			}
			id, _ := op["operationId"].(string)
			if id == "" {
				l.fail("%s: operationId is missing", opPtr)
			} else if prev, dup := operationIDs[id]; dup {
				l.fail("%s: operationId %q is also %s's", opPtr, id, prev)
			}
			operationIDs[id] = opPtr
			// Path parameters: exactly the template's, each required.
			params := map[string]map[string]bool{}
			for k, v := range shared {
				params[k] = v
			}
			for k, v := range l.params(op["parameters"], opPtr+"/parameters") {
				if params[k] == nil {
					params[k] = map[string]bool{}
				}
				for n := range v {
					params[k][n] = true
				}
			}
			var declared []string
			for n := range params["path"] {
				declared = append(declared, n)
			}
			if !sameSet(declared, names) {
				l.fail("%s: path parameters %v, the template has %v", opPtr, sorted(declared), sorted(names))
			}
			public := false
			if sec, ok := op["security"]; ok {
				l.checkSecurity(sec, opPtr+"/security", schemes)
				list, _ := sec.([]any)
				public = len(list) == 0
			}
			if rb, ok := op["requestBody"]; ok {
				body, bodyPtr := l.deref(rb, opPtr+"/requestBody")
				l.content(body, bodyPtr)
			}
			responses, _ := op["responses"].(map[string]any)
			if len(responses) == 0 {
				l.fail("%s: no responses", opPtr)
			}
			byStatus := map[int]*response{}
			for _, code := range sortedKeys(responses) {
				if !statusKey.MatchString(code) {
					// "default" and "4XX" would let any status pass.
					l.fail("%s: response %q: give each status code on its own", opPtr, code)
					continue
				}
				n, _ := strconv.Atoi(code)
				resp, respPtr := l.deref(responses[code], opPtr+pointer("responses", code))
				if resp == nil {
					continue
				}
				if d, _ := resp["description"].(string); d == "" {
					l.fail("%s: description is missing", respPtr)
				}
				if headers, ok := resp["headers"].(map[string]any); ok {
					for _, h := range sortedKeys(headers) {
						hdr, hPtr := l.deref(headers[h], respPtr+pointer("headers", h))
						if hdr != nil {
							if _, ok := hdr["schema"]; ok {
								l.compile(hPtr + "/schema")
							}
						}
					}
				}
				byStatus[n] = l.content(resp, respPtr)
			}
			tp.ops[strings.ToUpper(method)] = byStatus
			c.ops = append(c.ops, Operation{Method: strings.ToUpper(method), Path: p, Public: public})
		}
		if len(tp.ops) == 0 {
			l.fail("path %q has no operations", p)
		}
		c.templates = append(c.templates, tp)
	}
	// Two templates that match the same requests would make a check
	// ambiguous.
	for i, a := range c.templates {
		for _, b := range c.templates[i+1:] {
			if sameShape(a, b) {
				l.fail("paths %q and %q match the same requests", a.path, b.path)
			}
		}
	}
	return c
}

// params reads a parameter list: names by location ("path", "query", ...),
// compiling each schema.
func (l *loader) params(v any, ptr string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	list, _ := v.([]any)
	for i, pv := range list {
		p, pPtr := l.deref(pv, ptr+"/"+strconv.Itoa(i))
		if p == nil {
			continue
		}
		name, _ := p["name"].(string)
		in, _ := p["in"].(string)
		if name == "" || !slices.Contains([]string{"path", "query", "header", "cookie"}, in) {
			l.fail("%s: a parameter needs a name and in (path, query, header or cookie)", pPtr)
			continue
		}
		if in == "path" && p["required"] != true {
			l.fail("%s: path parameter %q must be required", pPtr, name)
		}
		if _, ok := p["schema"]; !ok {
			l.fail("%s: parameter %q has no schema", pPtr, name)
		} else {
			l.compile(pPtr + "/schema")
		}
		if out[in] == nil {
			out[in] = map[string]bool{}
		}
		out[in][name] = true
	}
	return out
}

// content compiles the schemas of a request body's or response's media
// types.
func (l *loader) content(obj map[string]any, ptr string) *response {
	r := &response{media: map[string]*jsonschema.Schema{}}
	if obj == nil {
		return r
	}
	media, _ := obj["content"].(map[string]any)
	for _, mt := range sortedKeys(media) {
		mPtr := ptr + pointer("content", mt)
		m, _ := media[mt].(map[string]any)
		if _, _, err := mime.ParseMediaType(mt); err != nil || m == nil {
			l.fail("%s: not a media type object", mPtr)
			continue
		}
		if _, ok := m["schema"]; !ok {
			l.fail("%s: no schema", mPtr)
			r.media[mt] = nil
			continue
		}
		s := l.compile(mPtr + "/schema")
		if isJSON(mt) {
			r.media[mt] = s
		} else {
			r.media[mt] = nil
		}
		if _, ok := m["x-event-data"]; ok {
			r.event = l.compile(mPtr + "/x-event-data")
		}
	}
	return r
}

// checkSecurity checks a security requirement list names defined schemes.
func (l *loader) checkSecurity(v any, ptr string, schemes map[string]any) {
	list, ok := v.([]any)
	if !ok {
		l.fail("%s: not a list", ptr)
		return
	}
	for _, req := range list {
		m, _ := req.(map[string]any)
		for name := range m {
			if _, ok := schemes[name]; !ok {
				l.fail("%s: unknown security scheme %q", ptr, name)
			}
		}
	}
}

// checkRefs checks that every $ref in v resolves.
func (l *loader) checkRefs(v any, ptr string) {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["$ref"].(string); ok {
			if !strings.HasPrefix(ref, "#/") {
				l.fail("%s: $ref %q is not local", ptr, ref)
			} else if _, ok := l.lookup(strings.TrimPrefix(ref, "#")); !ok {
				l.fail("%s: $ref %q names nothing", ptr, ref)
			}
		}
		for _, k := range sortedKeys(x) {
			l.checkRefs(x[k], ptr+pointer(k))
		}
	case []any:
		for i, e := range x {
			l.checkRefs(e, ptr+"/"+strconv.Itoa(i))
		}
	}
}

// Operations lists the document's operations, sorted by path then method.
func (c *Contract) Operations() []Operation {
	out := slices.Clone(c.ops)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// match finds the template of a request path: the one with the most
// literal segments among those that match, as the router prefers a static
// segment to a parameter.
func (c *Contract) match(p string) *template {
	segs := strings.Split(p, "/")[1:]
	var best *template
	for _, t := range c.templates {
		if len(t.segments) != len(segs) {
			continue
		}
		ok := true
		for i, s := range t.segments {
			if paramRE.MatchString(s) {
				ok = segs[i] != ""
			} else {
				ok = segs[i] == s
			}
			if !ok {
				break
			}
		}
		if ok && (best == nil || t.literals > best.literals) {
			best = t
		}
	}
	return best
}

// Check says why a response does not agree with the document, nil when it
// does. target is the request's path, with or without a query. The
// document must describe the status of the request's method on the path
// and the body's media type; a JSON body must validate against the
// schema. Requests the router answers itself are held to its answers: a
// path the document lacks must be a 404 and a method it lacks a 405, each
// with an error body.
func (c *Contract) Check(method, target string, status int, contentType string, body []byte) error {
	p := target
	if u, err := url.Parse(target); err == nil {
		p = u.Path
	}
	// A HEAD answer has no body: only its status is checked.
	head := method == "HEAD"
	t := c.match(p)
	if t == nil {
		if status != 404 {
			return fmt.Errorf("%s %s: the path is in no path of the document, so the answer must be 404, not %d", method, p, status)
		}
		if head {
			return nil
		}
		return c.validate(c.errSchema, contentType, body)
	}
	op, ok := t.ops[method]
	if !ok {
		if status != 405 {
			return fmt.Errorf("%s %s: %s has no %s, so the answer must be 405, not %d", method, p, t.path, method, status)
		}
		if head {
			return nil
		}
		return c.validate(c.errSchema, contentType, body)
	}
	r, ok := op[status]
	if !ok {
		return fmt.Errorf("%s %s: status %d is not documented for %s %s", method, p, status, method, t.path)
	}
	if head {
		return nil
	}
	return c.checkBody(r, method, p, t.path, status, contentType, body)
}

// checkBody checks a response's media type and body against what the
// document says of its status.
func (c *Contract) checkBody(r *response, method, p, tpath string, status int, contentType string, body []byte) error {
	if len(r.media) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%s %s: status %d has no body in the document, got %d bytes (%s)", method, p, status, len(body), contentType)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("%s %s: status %d: bad Content-Type %q", method, p, status, contentType)
	}
	schema, ok := r.media[mt]
	if !ok {
		return fmt.Errorf("%s %s: status %d: Content-Type %s is not documented for %s %s (it has %v)", method, p, status, mt, method, tpath, sortedKeys(r.media))
	}
	if schema == nil {
		return nil // not JSON: a stream, an archive, a file's bytes, text
	}
	if err := c.validate(schema, contentType, body); err != nil {
		return fmt.Errorf("%s %s: status %d (%s %s): %w", method, p, status, method, tpath, err)
	}
	return nil
}

// CheckEvent says why data, one event of the event stream at target
// (a GET's 200), does not agree with the document, nil when it does.
func (c *Contract) CheckEvent(target string, data []byte) error {
	p := target
	if u, err := url.Parse(target); err == nil {
		p = u.Path
	}
	t := c.match(p)
	if t == nil || t.ops["GET"] == nil || t.ops["GET"][200] == nil || t.ops["GET"][200].event == nil {
		return fmt.Errorf("GET %s: the document describes no event stream there", p)
	}
	if err := c.validate(t.ops["GET"][200].event, "application/json", data); err != nil {
		return fmt.Errorf("GET %s: event: %w", p, err)
	}
	return nil
}

// validate checks a JSON body against a schema.
func (c *Contract) validate(s *jsonschema.Schema, contentType string, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(contentType); !isJSON(mt) {
		return fmt.Errorf("the body should be JSON, Content-Type is %q", contentType)
	}
	if s == nil {
		return errors.New("no schema (the document failed to load)")
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the body is not JSON: %v; body %s", err, Excerpt(body))
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("%v\nbody: %s", err, Excerpt(body))
	}
	return nil
}

// Excerpt is the start of a body, for a message.
func Excerpt(body []byte) string {
	const max = 600
	if len(body) <= max {
		return string(body)
	}
	return string(body[:max]) + fmt.Sprintf("… (%d bytes in all)", len(body))
}

func isJSON(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }

func sameShape(a, b *template) bool {
	if len(a.segments) != len(b.segments) {
		return false
	}
	for i := range a.segments {
		pa, pb := paramRE.MatchString(a.segments[i]), paramRE.MatchString(b.segments[i])
		if pa != pb || (!pa && a.segments[i] != b.segments[i]) {
			return false
		}
	}
	return true
}

func sameSet(a, b []string) bool {
	return slices.Equal(sorted(a), sorted(b))
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
