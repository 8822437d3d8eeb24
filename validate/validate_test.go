package validate_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/matryer/is"
)

// body422 is the JSON a 422 would carry for err's field list.
func body422(t *testing.T, err error) ([]store.FieldError, int) {
	t.Helper()
	e := store.AsError(err)
	if e == nil || e.Code != store.Invalid || e.Fields == nil {
		t.Fatalf("want a 422 field list, got %v", err)
	}
	b, jerr := json.Marshal(map[string]any{"detail": e.Fields})
	if jerr != nil {
		t.Fatal(jerr)
	}
	return e.Fields, len(b)
}

func parse(t *testing.T, body string) *validate.Object {
	t.Helper()
	o, err := validate.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return o
}

// Each unknown package manager used to echo the whole packages object:
// a 59 KB request answered 355 MB. Now each item echoes its key.
func TestUnknownPackageManagersEchoTheirKeyOnly(t *testing.T) {
	is := is.New(t)
	pkgs := map[string][]string{}
	for i := range 5000 {
		pkgs[fmt.Sprintf("m%05d", i)] = []string{"x"}
	}
	raw, _ := json.Marshal(map[string]any{"name": "e", "packages": pkgs})
	_, err := validate.EnvironmentInput(parse(t, string(raw)))
	fields, size := body422(t, err)
	is.Equal(len(fields), validate.MaxErrors+1)                                               // the first MaxErrors problems and a count
	is.Equal(fields[0].Input, "m00000")                                                       // an item echoes the offending key
	is.Equal(fields[len(fields)-1].Type, "too_many_errors")                                   // the last item counts the rest
	is.True(strings.Contains(fields[len(fields)-1].Msg, fmt.Sprint(5000-validate.MaxErrors))) // how many were left out
	is.True(size < len(raw))                                                                  // the error is smaller than the request
}

// 500,000 bad resources (1 MB) used to answer 95 MB.
func TestBadResourcesAreCapped(t *testing.T) {
	is := is.New(t)
	items := strings.Repeat(`1,`, 500000)
	raw := `{"agent_id":"x","prompt":"p","resources":[` + strings.TrimSuffix(items, ",") + `]}`
	_, err := validate.SessionInput(parse(t, raw))
	fields, size := body422(t, err)
	is.Equal(len(fields), validate.MaxErrors+1) // capped
	is.True(size < 64<<10)                      // and small, whatever the count
}

func TestMountPaths(t *testing.T) {
	ok := []string{"/workspace/repo", "/home/sprite/src", "/opt/app", "/srv/x", "/tmp/checkout", "/workspace", "/var/www/app"}
	refused := map[string]string{
		"relative":                      "mount_path must be an absolute path",
		"/":                             "must not be the Sprite root",
		"/home/sprite/":                 "must not be the Sprite root",
		"/a\x00b":                       "control characters",
		"/" + strings.Repeat("a", 5000): "at most 1024 characters",
		"/etc/passwd":                   "under /etc",
		"/usr/bin":                      "under /usr",
		"/bin":                          "under /bin",
		"/lib":                          "under /lib",
		"/dev":                          "under /dev",
		"/proc/self":                    "under /proc",
		"/tmp":                          "/tmp",
		"/aod/runtimes/x":               "under /aod",
		"/workspace/../etc":             "under /etc",
	}
	session := func(mp string) *validate.Object {
		raw, _ := json.Marshal(map[string]any{"agent_id": "0195a0c0-0000-7000-8000-000000000001", "prompt": "p",
			"resources": []any{map[string]any{"type": "github_repository", "url": "https://github.com/o/r", "mount_path": mp}}})
		o, err := validate.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, mp := range ok {
		t.Run("accepts "+mp, func(t *testing.T) {
			is := is.New(t)
			in, err := validate.SessionInput(session(mp))
			is.NoErr(err)                                              // a path a checkout can live at
			is.True(strings.HasPrefix(in.Resources[0].MountPath, "/")) // kept, cleaned
		})
	}
	for mp, want := range refused {
		t.Run(fmt.Sprintf("refuses %.40q", mp), func(t *testing.T) {
			is := is.New(t)
			_, err := validate.SessionInput(session(mp))
			fields, size := body422(t, err)
			is.Equal(fields[0].Loc, []any{"resources", 0, "mount_path"}) // the 422 names the field
			is.True(strings.Contains(fields[0].Msg, want))               // and why
			is.True(size < 4<<10)                                        // echoing at most a bounded path
		})
	}
}

func TestCheckout(t *testing.T) {
	ok := []string{"main", "feature/x", "v1.0.2", "release-2026.01", "0123456789abcdef0123456789abcdef01234567", "ünïcode",
		strings.Repeat("a", validate.MaxCheckoutLen)}
	refused := map[string]string{
		"": "must not be empty",
		strings.Repeat("a", validate.MaxCheckoutLen+1): "at most 255 characters",
		"-x":                         "must not start with '-'",
		"--upload-pack=touch /tmp/x": "must not start with '-'",
		"a\nb":                       "control characters",
		"a\x7fb":                     "control characters",
		"a b":                        "must not contain spaces",
		"a~1":                        "any of ~ ^ : ? * [ \\",
		"a^":                         "any of",
		"a:b":                        "any of",
		"a?":                         "any of",
		"a*":                         "any of",
		"a[b":                        "any of",
		"a\\b":                       "any of",
		"a..b":                       "'..'",
		"a@{1}":                      "'@{'",
		"@":                          "nor be '@'",
		"/main":                      "start or end with '/'",
		"main/":                      "start or end with '/'",
		"a//b":                       "'//'",
		"main.":                      "end with '.'",
		".hidden":                    "starts with '.'",
		"a/.b":                       "starts with '.'",
		"a.lock":                     "ends with '.lock'",
		"a.lock/b":                   "ends with '.lock'",
	}
	session := func(ref any) *validate.Object {
		raw, _ := json.Marshal(map[string]any{"agent_id": "0195a0c0-0000-7000-8000-000000000001", "prompt": "p",
			"resources": []any{map[string]any{"type": "github_repository", "url": "https://github.com/o/r", "checkout": ref}}})
		o, err := validate.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, ref := range ok {
		t.Run(fmt.Sprintf("accepts %.40q", ref), func(t *testing.T) {
			is := is.New(t)
			in, err := validate.SessionInput(session(ref))
			is.NoErr(err)                           // a branch, tag or commit name
			is.Equal(in.Resources[0].Checkout, ref) // kept as given
		})
	}
	t.Run("null is none", func(t *testing.T) {
		is := is.New(t)
		in, err := validate.SessionInput(session(nil))
		is.NoErr(err)                          // no checkout
		is.Equal(in.Resources[0].Checkout, "") // the default branch
	})
	t.Run("a number is refused", func(t *testing.T) {
		is := is.New(t)
		_, err := validate.SessionInput(session(7))
		fields, _ := body422(t, err)
		is.Equal(fields[0].Loc, []any{"resources", 0, "checkout"}) // the 422 names the field
		is.Equal(fields[0].Type, "string_type")                    // as not a string
	})
	for ref, want := range refused {
		t.Run(fmt.Sprintf("refuses %.40q", ref), func(t *testing.T) {
			is := is.New(t)
			_, err := validate.SessionInput(session(ref))
			fields, size := body422(t, err)
			is.Equal(len(fields), 1)                                   // one problem
			is.Equal(fields[0].Loc, []any{"resources", 0, "checkout"}) // the 422 names the field
			is.True(strings.Contains(fields[0].Msg, want))             // and why
			is.True(size < 2<<10)                                      // echoing at most a bounded value
		})
	}
}

func TestTooManyErrorsOnlyPastTheCap(t *testing.T) {
	is := is.New(t)
	_, err := validate.AgentInput(parse(t, `{"name": 1, "model": 2, "runtime": 3}`))
	fields, _ := body422(t, err)
	for _, f := range fields {
		is.True(f.Type != "too_many_errors") // a handful of errors carries no count item
	}
}
