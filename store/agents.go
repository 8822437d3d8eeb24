package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"time"
)

// Agent is a reusable, versioned template for sessions.
type Agent struct {
	ID            string
	UserID        string
	Name          string
	Description   string
	System        string
	Runtime       string
	Provider      string
	Model         string
	EnvironmentID string // "" when the agent has no default environment
	Skills        json.RawMessage
	MCPServers    json.RawMessage
	Metadata      map[string]string
	Version       int
	CreatedAt     time.Time
	UpdatedAt     time.Time
	ArchivedAt    *time.Time
}

// AgentVersion is the snapshot of an agent's content at one version.
type AgentVersion struct {
	Agent     // ID is the agent's id; UpdatedAt and ArchivedAt are unset
	CreatedAt time.Time
}

// AgentInput is a validated create request. Skills and MCPServers are JSON
// arrays in canonical form.
type AgentInput struct {
	Name, Description, System string
	Model                     Model
	EnvironmentID             string
	Skills, MCPServers        json.RawMessage
	Metadata                  map[string]string
}

// AgentPatch is a validated update: nil fields are left alone.
type AgentPatch struct {
	Version                   int
	Name, Description, System *string
	Runtime, Provider, Model  *string
	// EnvironmentSet says the request named environment_id; EnvironmentID
	// nil then detaches the environment.
	EnvironmentSet     bool
	EnvironmentID      *string
	Skills, MCPServers json.RawMessage
	// Metadata is merged key by key; an empty value deletes the key.
	Metadata map[string]string
}

const agentColumns = `id, user_id, name, description, system, runtime, provider, model, environment_id,
	skills, mcp_servers, metadata, version, created_at, updated_at, archived_at`

func scanAgent(s scanner) (*Agent, error) {
	var a Agent
	var env, archived sql.NullString
	var skills, mcp, meta, created, updated string
	if err := s.Scan(&a.ID, &a.UserID, &a.Name, &a.Description, &a.System, &a.Runtime, &a.Provider, &a.Model, &env,
		&skills, &mcp, &meta, &a.Version, &created, &updated, &archived); err != nil {
		return nil, err
	}
	a.EnvironmentID = env.String
	a.Skills, a.MCPServers = json.RawMessage(skills), json.RawMessage(mcp)
	if err := json.Unmarshal([]byte(meta), &a.Metadata); err != nil {
		return nil, err
	}
	a.CreatedAt, _ = ParseTime(created)
	a.UpdatedAt, _ = ParseTime(updated)
	a.ArchivedAt = parseNullTime(archived)
	return &a, nil
}

func agentNotFound() error { return Errorf(NotFound, "Agent not found") }

// checkAssignableEnvironment is the rule for giving an agent a default
// environment: the caller's, and not archived.
func checkAssignableEnvironment(ctx context.Context, q querier, userID, envID string) error {
	env, err := getEnvironment(ctx, q, userID, envID)
	if err != nil {
		return err
	}
	if env.ArchivedAt != nil {
		return Errorf(Conflict, "Cannot assign an archived environment to an agent")
	}
	return nil
}

// CreateAgent stores a new agent at version 1 with its version-1 snapshot.
func (db *DB) CreateAgent(ctx context.Context, userID string, in AgentInput) (*Agent, error) {
	var a *Agent
	err := db.write(ctx, func(tx *Tx) error {
		if in.EnvironmentID != "" {
			if err := checkAssignableEnvironment(ctx, tx, userID, in.EnvironmentID); err != nil {
				return err
			}
		}
		a = &Agent{
			ID: NewID(), UserID: userID, Name: in.Name, Description: in.Description, System: in.System,
			Runtime: in.Model.Runtime, Provider: in.Model.Provider, Model: in.Model.Model,
			EnvironmentID: in.EnvironmentID, Skills: orEmpty(in.Skills, "[]"), MCPServers: orEmpty(in.MCPServers, "[]"),
			Metadata: in.Metadata, Version: 1, CreatedAt: tx.Now, UpdatedAt: tx.Now,
		}
		if a.Metadata == nil {
			a.Metadata = map[string]string{}
		}
		meta, _ := json.Marshal(a.Metadata)
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents(`+agentColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL)`,
			a.ID, userID, a.Name, a.Description, a.System, a.Runtime, a.Provider, a.Model, nullString(a.EnvironmentID),
			string(a.Skills), string(a.MCPServers), string(meta), a.Version, tx.Stamp(), tx.Stamp()); err != nil {
			return err
		}
		return snapshotAgent(ctx, tx, a)
	})
	return a, err
}

func orEmpty(b json.RawMessage, empty string) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage(empty)
	}
	return b
}

func snapshotAgent(ctx context.Context, tx *Tx, a *Agent) error {
	meta, _ := json.Marshal(a.Metadata)
	_, err := tx.ExecContext(ctx, `INSERT INTO agent_versions(agent_id, version, name, description, system, runtime, provider, model,
		environment_id, skills, mcp_servers, metadata, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		a.ID, a.Version, a.Name, a.Description, a.System, a.Runtime, a.Provider, a.Model, nullString(a.EnvironmentID),
		string(a.Skills), string(a.MCPServers), string(meta), tx.Stamp())
	return err
}

// GetAgent returns one of the user's agents, archived or not.
func (db *DB) GetAgent(ctx context.Context, userID, id string) (*Agent, error) {
	return getAgent(ctx, db.reader, userID, id)
}

func getAgent(ctx context.Context, q querier, userID, id string) (*Agent, error) {
	a, err := scanAgent(q.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = ? AND user_id = ?`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, agentNotFound()
	}
	return a, err
}

// ListAgents returns the user's agents, newest first; archived ones only
// when includeArchived.
func (db *DB) ListAgents(ctx context.Context, userID string, includeArchived bool) ([]*Agent, error) {
	q := `SELECT ` + agentColumns + ` FROM agents WHERE user_id = ?`
	if !includeArchived {
		q += ` AND archived_at IS NULL`
	}
	rows, err := db.reader.QueryContext(ctx, q+` ORDER BY id DESC`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Agent{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// UpdateAgent applies p under optimistic concurrency. Checks run in the
// contract's order: environment, agent, archived, version, catalogue. A patch
// that changes nothing keeps the version and writes nothing.
func (db *DB) UpdateAgent(ctx context.Context, userID, id string, p AgentPatch) (*Agent, error) {
	var a *Agent
	err := db.write(ctx, func(tx *Tx) error {
		if p.EnvironmentSet && p.EnvironmentID != nil {
			if err := checkAssignableEnvironment(ctx, tx, userID, *p.EnvironmentID); err != nil {
				return err
			}
		}
		var err error
		if a, err = getAgent(ctx, tx, userID, id); err != nil {
			return err
		}
		if a.ArchivedAt != nil {
			return Errorf(Conflict, "Cannot update an archived agent")
		}
		if p.Version != a.Version {
			return Errorf(Conflict, "Version mismatch: expected %d, got %d", a.Version, p.Version)
		}
		next := *a
		next.Metadata = maps.Clone(a.Metadata)
		if p.Runtime != nil || p.Provider != nil || p.Model != nil {
			m, err := resolvePatchModel(a, p)
			if err != nil {
				return err
			}
			next.Runtime, next.Provider, next.Model = m.Runtime, m.Provider, m.Model
		}
		setIf(&next.Name, p.Name)
		setIf(&next.Description, p.Description)
		setIf(&next.System, p.System)
		if p.EnvironmentSet {
			next.EnvironmentID = ""
			if p.EnvironmentID != nil {
				next.EnvironmentID = *p.EnvironmentID
			}
		}
		if p.Skills != nil {
			next.Skills = p.Skills
		}
		if p.MCPServers != nil {
			next.MCPServers = p.MCPServers
		}
		for k, v := range p.Metadata {
			if v == "" {
				delete(next.Metadata, k)
			} else {
				next.Metadata[k] = v
			}
		}
		if agentContentEqual(a, &next) {
			return nil
		}
		next.Version++
		next.UpdatedAt = tx.Now
		meta, _ := json.Marshal(next.Metadata)
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET name=?, description=?, system=?, runtime=?, provider=?, model=?,
			environment_id=?, skills=?, mcp_servers=?, metadata=?, version=?, updated_at=? WHERE id=?`,
			next.Name, next.Description, next.System, next.Runtime, next.Provider, next.Model, nullString(next.EnvironmentID),
			string(next.Skills), string(next.MCPServers), string(meta), next.Version, tx.Stamp(), next.ID); err != nil {
			return err
		}
		a = &next
		return snapshotAgent(ctx, tx, a)
	})
	return a, err
}

// resolvePatchModel re-checks the effective runtime/provider/model. Naming
// only a new provider keeps the current runtime when it serves that
// provider, else moves to the provider's own runtime.
func resolvePatchModel(a *Agent, p AgentPatch) (Model, error) {
	runtime, model := a.Runtime, a.Model
	if p.Model != nil {
		model = *p.Model
	}
	if p.Runtime != nil {
		runtime = *p.Runtime
	}
	if p.Provider != nil && *p.Provider != "" {
		if p.Runtime == nil && !servesProvider(runtime, *p.Provider) {
			runtime = ""
		}
		return ResolveModel(runtime, *p.Provider, model)
	}
	if p.Model == nil || modelRE.MatchString(model) {
		return ResolveModel(runtime, "", model)
	}
	// A bare model name with no provider keeps the agent's provider.
	return ResolveModel(runtime, a.Provider, model)
}

func setIf(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func agentContentEqual(a, b *Agent) bool {
	return a.Name == b.Name && a.Description == b.Description && a.System == b.System &&
		a.Runtime == b.Runtime && a.Provider == b.Provider && a.Model == b.Model &&
		a.EnvironmentID == b.EnvironmentID && bytes.Equal(a.Skills, b.Skills) &&
		bytes.Equal(a.MCPServers, b.MCPServers) && maps.Equal(a.Metadata, b.Metadata)
}

// ArchiveAgent sets archived_at; the version is unchanged.
func (db *DB) ArchiveAgent(ctx context.Context, userID, id string) (*Agent, error) {
	var a *Agent
	err := db.write(ctx, func(tx *Tx) error {
		var err error
		if a, err = getAgent(ctx, tx, userID, id); err != nil {
			return err
		}
		if a.ArchivedAt != nil {
			return Errorf(Conflict, "Agent is already archived")
		}
		now := tx.Now
		a.ArchivedAt, a.UpdatedAt = &now, now
		_, err = tx.ExecContext(ctx, `UPDATE agents SET archived_at = ?, updated_at = ? WHERE id = ?`, tx.Stamp(), tx.Stamp(), id)
		return err
	})
	return a, err
}

// AgentVersions lists the agent's snapshots, highest version first.
func (db *DB) AgentVersions(ctx context.Context, userID, id string) ([]*AgentVersion, error) {
	if _, err := getAgent(ctx, db.reader, userID, id); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT `+agentVersionColumns+` FROM agent_versions WHERE agent_id = ? ORDER BY version DESC`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*AgentVersion{}
	for rows.Next() {
		v, err := scanAgentVersion(rows)
		if err != nil {
			return nil, err
		}
		v.UserID = userID
		out = append(out, v)
	}
	return out, rows.Err()
}

const agentVersionColumns = `agent_id, version, name, description, system, runtime, provider, model,
	environment_id, skills, mcp_servers, metadata, created_at`

func scanAgentVersion(s scanner) (*AgentVersion, error) {
	var v AgentVersion
	var env sql.NullString
	var skills, mcp, meta, created string
	if err := s.Scan(&v.ID, &v.Version, &v.Name, &v.Description, &v.System, &v.Runtime, &v.Provider, &v.Model,
		&env, &skills, &mcp, &meta, &created); err != nil {
		return nil, err
	}
	v.EnvironmentID = env.String
	v.Skills, v.MCPServers = json.RawMessage(skills), json.RawMessage(mcp)
	if err := json.Unmarshal([]byte(meta), &v.Metadata); err != nil {
		return nil, err
	}
	v.CreatedAt, _ = ParseTime(created)
	return &v, nil
}

func agentVersion(ctx context.Context, q querier, agentID string, version int) (*AgentVersion, error) {
	return scanAgentVersion(q.QueryRowContext(ctx, `SELECT `+agentVersionColumns+` FROM agent_versions WHERE agent_id = ? AND version = ?`, agentID, version))
}
