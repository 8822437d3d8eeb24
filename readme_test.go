package main

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/spf13/pflag"
)

// TestReadmeConfigurationTable keeps the README's configuration table and
// serve's flags from drifting: every flag has a row and every row with a
// flag has one, with the same environment variable and the same default.
func TestReadmeConfigurationTable(t *testing.T) {
	t.Parallel()
	is := is.New(t)
	readme, err := os.ReadFile("README.md")
	is.NoErr(err) // the README is at the root
	section := string(readme)
	start := strings.Index(section, "## Configuration")
	is.True(start >= 0) // it has a Configuration section
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	rows := map[string][3]string{} // flag -> environment, default, raw row
	rowRE := regexp.MustCompile("^\\| (`--[a-z-]+`)? *\\| `([A-Z_=0-9]+)` \\|([^|]*)\\|")
	for _, line := range strings.Split(section, "\n") {
		m := rowRE.FindStringSubmatch(line)
		if m == nil || m[1] == "" {
			continue // not a row, or a variable without a flag
		}
		rows[strings.Trim(m[1], "`-")] = [3]string{m[2], strings.TrimSpace(m[3]), line}
	}

	var dataDir string
	serve := serveCmd(func(string) string { return "" }, nil, &dataDir, io.Discard, io.Discard)
	flags := serve.Flags()
	flags.String("data-dir", defaultDataDir, "(env AOD_DATA_DIR)") // the root's persistent flag
	envRE := regexp.MustCompile(`\(.*env ([A-Z_=0-9]+)\)$`)
	seen := 0
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		seen++
		row, ok := rows[f.Name]
		if !ok {
			t.Errorf("README's configuration table has no row for --%s", f.Name)
			return
		}
		if m := envRE.FindStringSubmatch(f.Usage); m == nil || m[1] != row[0] {
			t.Errorf("--%s: README names %s, the flag's help says %q", f.Name, row[0], f.Usage)
		}
		if !sameDefault(f, row[1]) {
			t.Errorf("--%s: README's default %q, the flag's %q\n%s", f.Name, row[1], f.DefValue, row[2])
		}
	})
	is.Equal(len(rows), seen) // no row for a flag that does not exist
}

// sameDefault compares a README default cell with a flag's default: the
// first `code` span must be the default (durations compared as durations);
// "off" is a false switch; a flag without a default may have a descriptive
// cell or none.
func sameDefault(f *pflag.Flag, cell string) bool {
	if f.Value.Type() == "bool" {
		return (cell == "off") == (f.DefValue == "false")
	}
	first := ""
	if _, rest, ok := strings.Cut(cell, "`"); ok {
		first, _, _ = strings.Cut(rest, "`")
	}
	if f.DefValue == "" || f.DefValue == "[]" { // none, or an empty list
		return first == "" || strings.Contains(first, "<")
	}
	if f.Value.Type() == "duration" {
		want, err1 := time.ParseDuration(f.DefValue)
		got, err2 := time.ParseDuration(first)
		return err1 == nil && err2 == nil && want == got
	}
	return first == f.DefValue
}
