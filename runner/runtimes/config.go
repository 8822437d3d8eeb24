package runtimes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/store"
)

// MCPServer is one entry of an agent's mcp_servers, as the API validated
// it: type is "url" (url, headers) or "stdio" (command, args, env).
type MCPServer struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Command string            `json:"command"`
	Args    []string          `json:"args"`
	Env     map[string]string `json:"env"`
}

// ParseMCPServers reads an agent's mcp_servers.
func ParseMCPServers(raw json.RawMessage) ([]MCPServer, error) {
	var out []MCPServer
	if len(raw) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("the agent's mcp_servers: %w", err)
	}
	return out, nil
}

// mergeJSONFile sets keys of the JSON object in the sprite file p, keeping
// everything else the file holds (CLI state such as ~/.claude.json's
// other keys). set receives the top-level object; values it leaves alone
// are written back as they were read. A missing file starts empty; a file
// that is not a JSON object is an error, never overwritten.
func mergeJSONFile(ctx context.Context, sp sprite.Sprite, p string, mode fs.FileMode, set func(top map[string]json.RawMessage) error) error {
	top := map[string]json.RawMessage{}
	data, err := sp.ReadFile(ctx, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", p, err)
	case len(bytes.TrimSpace(data)) > 0:
		if err := json.Unmarshal(data, &top); err != nil || top == nil {
			return fmt.Errorf("%s exists but is not a JSON object; not overwriting it", p)
		}
	}
	if err := set(top); err != nil {
		return err
	}
	out, err := marshalJSON(top)
	if err != nil {
		return err
	}
	return sp.WriteFile(ctx, p, out, mode)
}

// mergeObject sets entries of the object under key (created when missing
// or not an object), keeping its other entries.
func mergeObject(top map[string]json.RawMessage, key string, entries map[string]any) error {
	obj := map[string]json.RawMessage{}
	if raw, ok := top[key]; ok {
		if json.Unmarshal(raw, &obj) != nil || obj == nil {
			obj = map[string]json.RawMessage{}
		}
	}
	for k, v := range entries {
		b, err := marshalCompact(v)
		if err != nil {
			return err
		}
		obj[k] = b
	}
	b, err := marshalCompact(obj)
	if err != nil {
		return err
	}
	top[key] = b
	return nil
}

// setPath sets a nested value (keys a, b, c for {"a":{"b":{"c":v}}}),
// creating the objects on the way and keeping their other entries. With
// force unset an existing value is left alone. A non-object on the way is
// replaced only with force.
func setPath(top map[string]json.RawMessage, v any, force bool, keys ...string) error {
	if len(keys) == 1 {
		if _, ok := top[keys[0]]; ok && !force {
			return nil
		}
		b, err := marshalCompact(v)
		if err != nil {
			return err
		}
		top[keys[0]] = b
		return nil
	}
	child := map[string]json.RawMessage{}
	if raw, ok := top[keys[0]]; ok {
		if json.Unmarshal(raw, &child) != nil || child == nil {
			if !force {
				return nil // not an object: the user's, leave it
			}
			child = map[string]json.RawMessage{}
		}
	}
	if err := setPath(child, v, force, keys[1:]...); err != nil {
		return err
	}
	b, err := marshalCompact(child)
	if err != nil {
		return err
	}
	top[keys[0]] = b
	return nil
}

// marshalJSON renders v indented, with a final newline and without HTML
// escaping (URLs keep their & as written).
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func marshalCompact(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// envRef matches a whole "${VAR}" value.
var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// envRefs matches each ${VAR} inside a value.
var envRefs = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// tomlDoc writes the few TOML shapes codex's config.toml needs: key =
// string, key = [strings], key = {inline table of strings}, [tables].
type tomlDoc struct{ b strings.Builder }

func (d *tomlDoc) comment(s string) { d.b.WriteString("# " + s + "\n") }

func (d *tomlDoc) table(keys ...string) {
	if d.b.Len() > 0 {
		d.b.WriteString("\n")
	}
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = tomlKey(k)
	}
	d.b.WriteString("[" + strings.Join(q, ".") + "]\n")
}

func (d *tomlDoc) str(k, v string) { d.b.WriteString(tomlKey(k) + " = " + tomlString(v) + "\n") }

func (d *tomlDoc) strs(k string, vs []string) {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = tomlString(v)
	}
	d.b.WriteString(tomlKey(k) + " = [" + strings.Join(q, ", ") + "]\n")
}

func (d *tomlDoc) inline(k string, m map[string]string) {
	keys := store.SortedKeys(m)
	q := make([]string, len(keys))
	for i, mk := range keys {
		q[i] = tomlKey(mk) + " = " + tomlString(m[mk])
	}
	d.b.WriteString(tomlKey(k) + " = { " + strings.Join(q, ", ") + " }\n")
}

func (d *tomlDoc) bytes() []byte { return []byte(d.b.String()) }

var tomlBare = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if tomlBare.MatchString(k) {
		return k
	}
	return tomlString(k)
}

// tomlString is a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f || r == utf8.RuneError {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
