package validate

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"

	"github.com/aod/aod/store"
)

// Bounds of agent and environment fields.
const (
	MaxNameLen   = 200
	MaxModelLen  = 200
	maxListItems = 20
)

// agentFields are the fields create and update share.
type agentFields struct {
	name, description, system *string
	runtime, provider, model  *string
	envSet                    bool
	envID                     *string // nil = none
	envRaw                    string  // as sent, for the 404 check
	skills, mcp               json.RawMessage
	metadata                  map[string]string
}

// decodeAgentFields reads the agent fields; on create name and model are
// required and runtime or provider must be given.
func decodeAgentFields(o *Object, create bool) agentFields {
	var f agentFields
	if create {
		name := o.str("name", MaxNameLen)
		f.name = &name
		model := o.str("model", MaxModelLen)
		f.model = &model
		if !o.present("runtime") && !o.present("provider") {
			o.missing("runtime")
		}
	} else {
		f.name = o.optStr("name", MaxNameLen)
		f.model = o.optStr("model", MaxModelLen)
	}
	f.description = o.optStr("description", 0)
	f.system = o.optStr("system", 0)
	f.runtime = o.optStr("runtime", 64)
	f.provider = o.optStr("provider", 64)
	if m, ok := o.m["model"].(string); ok && strings.TrimSpace(m) == "" {
		o.valueError([]any{"model"}, m, "Model must be a non-empty string")
	}
	if f.envSet = o.has("environment_id"); f.envSet {
		if s := o.optStr("environment_id", 0); s != nil && *s != "" {
			f.envRaw = *s
			f.envID = s
		}
	}
	if l, ok := o.list("skills"); ok {
		f.skills = validateSkills(o, l)
	}
	if l, ok := o.list("mcp_servers"); ok {
		f.mcp = validateMCPServers(o, l)
	}
	f.metadata = o.stringMap("metadata")
	return f
}

// envID maps a client's environment_id to canonical form (nil stays nil).
func envID(raw *string) (*string, error) {
	if raw == nil {
		return nil, nil
	}
	id, err := ID(*raw, "Environment")
	return &id, err
}

// AgentInput validates an agent create: the schema first (every field
// problem in one 422), then the catalogue (unknown runtime 400, model and
// provider 422), then the environment id's form (404).
func AgentInput(o *Object) (store.AgentInput, error) {
	f := decodeAgentFields(o, true)
	if err := o.Err(); err != nil {
		return store.AgentInput{}, err
	}
	m, err := store.ResolveModel(deref(f.runtime), deref(f.provider), *f.model)
	if err != nil {
		return store.AgentInput{}, err
	}
	env, err := envID(f.envID)
	if err != nil {
		return store.AgentInput{}, err
	}
	return store.AgentInput{
		Name: *f.name, Description: deref(f.description), System: deref(f.system), Model: m,
		EnvironmentID: deref(env), Skills: f.skills, MCPServers: f.mcp, Metadata: f.metadata,
	}, nil
}

// AgentPatch validates an agent update: version and schema, then the
// catalogue checks that need no stored state, then the environment id.
func AgentPatch(o *Object) (store.AgentPatch, error) {
	version, _ := o.integer("version", true, 0, 1<<31)
	f := decodeAgentFields(o, false)
	if err := o.Err(); err != nil {
		return store.AgentPatch{}, err
	}
	if f.runtime != nil && !store.KnownRuntime(*f.runtime) {
		return store.AgentPatch{}, store.UnknownRuntimeError(*f.runtime)
	}
	if f.provider != nil && *f.provider != "" && !store.KnownProvider(strings.TrimSpace(*f.provider)) {
		return store.AgentPatch{}, store.UnknownProviderError(*f.provider)
	}
	env, err := envID(f.envID)
	if err != nil {
		return store.AgentPatch{}, err
	}
	p := store.AgentPatch{
		Version: int(version), Name: f.name, Description: f.description, System: f.system,
		Runtime: f.runtime, Provider: f.provider, Model: f.model,
		EnvironmentSet: f.envSet, EnvironmentID: env,
		Skills: f.skills, MCPServers: f.mcp, Metadata: f.metadata,
	}
	if p.Provider != nil && *p.Provider == "" {
		p.Provider = nil // "" keeps the current provider, as in the original
	}
	return p, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

var skillNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
var skillSourceRE = regexp.MustCompile(`^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$`)

const (
	maxSkillContent     = 64 << 10
	maxSkillDescription = 1024
)

// validateSkills checks the skills list and returns it in canonical JSON.
// Like the original's validator it reports the first problem, as a value
// error on ["skills"].
func validateSkills(o *Object, items []any) json.RawMessage {
	loc := []any{"skills"}
	fail := func(format string, args ...any) json.RawMessage {
		o.valueError(loc, items, format, args...)
		return nil
	}
	seen := map[string]bool{}
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return fail("skills[%d] must be an object", i)
		}
		_, hasType := m["type"]
		_, hasContent := m["content"]
		_, hasSource := m["source"]
		github := hasType || (hasSource && !hasContent)
		allowed := []string{"content", "description", "name"}
		required := []string{"name", "description", "content"}
		if github {
			allowed = []string{"description", "name", "source", "type"}
			required = []string{"source"}
		}
		var unknown []string
		for k := range m {
			if !slices.Contains(allowed, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			slices.Sort(unknown)
			return fail("skills[%d]: unknown keys %s. Allowed: %s", i, store.PyList(unknown), store.PyList(allowed))
		}
		for _, k := range required {
			if _, ok := m[k]; !ok {
				return fail("skills[%d] missing required field: %s", i, k)
			}
		}
		strs := map[string]string{}
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return fail("skills[%d].%s must be a string", i, k)
			}
			strs[k] = s
		}
		if github && hasType && strs["type"] != "github" {
			return fail("skills[%d].type must be 'github'", i)
		}
		if github && !skillSourceRE.MatchString(strs["source"]) {
			return fail("skills[%d].source '%s' must be owner/repo", i, strs["source"])
		}
		name, hasName := strs["name"]
		if hasName && !skillNameRE.MatchString(name) {
			return fail("skills[%d].name '%s' must match [a-z0-9][a-z0-9-]{0,63}", i, name)
		}
		if len([]rune(strs["description"])) > maxSkillDescription {
			return fail("skills[%d].description exceeds 1024 chars", i)
		}
		if len(strs["content"]) > maxSkillContent {
			return fail("skills[%d].content exceeds 65536 bytes", i)
		}
		if strings.Contains(strs["content"], "SKILL_EOF") {
			return fail("skills[%d].content must not contain 'SKILL_EOF'", i)
		}
		key := name
		if !hasName {
			key = "source:" + strs["source"]
		}
		if seen[key] {
			return fail("skills[%d]: duplicate name '%s'", i, strings.TrimPrefix(key, "source:"))
		}
		seen[key] = true
	}
	if len(items) > maxListItems {
		return fail("Maximum 20 skills per agent")
	}
	return canonicalJSON(items)
}

// validateMCPServers checks the MCP server list, fills in the type the
// Python SDK requires (url when a url is given, stdio for a command) and
// returns it in canonical JSON.
func validateMCPServers(o *Object, items []any) json.RawMessage {
	loc := []any{"mcp_servers"}
	fail := func(format string, args ...any) json.RawMessage {
		o.valueError(loc, items, format, args...)
		return nil
	}
	seen := map[string]bool{}
	out := make([]any, len(items))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return fail("mcp_servers[%d] must be an object", i)
		}
		name, ok := m["name"]
		if !ok {
			return fail("mcp_servers[%d] missing required field: name", i)
		}
		nameStr, ok := name.(string)
		if !ok || nameStr == "" {
			return fail("mcp_servers[%d].name must be a non-empty string", i)
		}
		typ, hasType := m["type"].(string)
		if _, present := m["type"]; present && !hasType {
			return fail("mcp_servers[%d].type must be a string", i)
		}
		if !hasType {
			typ = "url"
			if _, hasURL := m["url"]; !hasURL {
				if _, hasCmd := m["command"]; hasCmd {
					typ = "stdio"
				}
			}
		}
		switch typ {
		case "url":
			u, ok := m["url"]
			if !ok {
				return fail("mcp_servers[%d] (url): missing required field: url", i)
			}
			if s, ok := u.(string); !ok || s == "" {
				return fail("mcp_servers[%d].url must be a non-empty string", i)
			}
			if h, ok := m["headers"]; ok && !isStringMap(h) {
				return fail("mcp_servers[%d].headers must be an object of strings", i)
			}
		case "stdio":
			c, ok := m["command"]
			if !ok {
				return fail("mcp_servers[%d] (stdio): missing required field: command", i)
			}
			if s, ok := c.(string); !ok || s == "" {
				return fail("mcp_servers[%d].command must be a non-empty string", i)
			}
			if a, ok := m["args"]; ok && !isStringList(a) {
				return fail("mcp_servers[%d].args must be a list of strings", i)
			}
			if e, ok := m["env"]; ok && !isStringMap(e) {
				return fail("mcp_servers[%d].env must be an object of strings", i)
			}
		default:
			return fail("mcp_servers[%d]: unknown type '%s'. Must be one of: ['stdio', 'url']", i, typ)
		}
		if seen[nameStr] {
			return fail("mcp_servers[%d]: duplicate name '%s'", i, nameStr)
		}
		seen[nameStr] = true
		withType := make(map[string]any, len(m)+1)
		for k, v := range m {
			withType[k] = v
		}
		withType["type"] = typ
		out[i] = withType
	}
	if len(items) > maxListItems {
		return fail("Maximum 20 MCP servers per agent")
	}
	return canonicalJSON(out)
}

func isStringMap(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for _, x := range m {
		if _, ok := x.(string); !ok {
			return false
		}
	}
	return true
}

func isStringList(v any) bool {
	l, ok := v.([]any)
	if !ok {
		return false
	}
	for _, x := range l {
		if _, ok := x.(string); !ok {
			return false
		}
	}
	return true
}
