package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"
)

// Environment is where sessions run: packages, secret env vars, a setup
// script and a network policy. EnvVars is never loaded by the API reads;
// use EnvironmentSecrets.
type Environment struct {
	ID          string
	UserID      string
	Name        string
	Packages    map[string][]string
	SetupScript string
	Networking  Networking
	Version     int
	CreatedAt   time.Time
	UpdatedAt   time.Time
	ArchivedAt  *time.Time
}

// PackageManagers are the managers an environment may list packages for,
// in the order provisioning installs them (apt first: language managers
// often need system libraries).
var PackageManagers = []string{"apt", "cargo", "gem", "go", "npm", "pip"}

// PackageRegistries are the hosts each package manager installs from, which
// a limited policy with allow_package_managers lets sprites reach.
var PackageRegistries = map[string][]string{
	"apt":   {"deb.debian.org", "security.debian.org", "archive.ubuntu.com", "security.ubuntu.com", "ports.ubuntu.com"},
	"cargo": {"crates.io", "index.crates.io", "static.crates.io", "static.rust-lang.org"},
	"gem":   {"rubygems.org", "index.rubygems.org"},
	"go":    {"proxy.golang.org", "sum.golang.org"},
	"npm":   {"registry.npmjs.org", "registry.yarnpkg.com"},
	"pip":   {"pypi.org", "files.pythonhosted.org"},
}

// Networking is the policy type and every other key the client sent with it
// (allowed_hosts and anything else), kept as canonical JSON.
type Networking struct {
	Type   string
	Config json.RawMessage // a JSON object; "{}" when empty
}

// Equal compares two policies.
func (n Networking) Equal(o Networking) bool {
	return n.Type == o.Type && bytes.Equal(orEmpty(n.Config, "{}"), orEmpty(o.Config, "{}"))
}

// AllowPackageManagers is the policy's allow_package_managers: a limited
// policy that says true also reaches PackageRegistries.
func (n Networking) AllowPackageManagers() bool {
	var cfg struct {
		Allow any `json:"allow_package_managers"`
	}
	json.Unmarshal(n.Config, &cfg)
	return cfg.Allow == true
}

// AllowedHosts are the policy's allowed_hosts (validation made them a list
// of non-empty strings).
func (n Networking) AllowedHosts() []string {
	var cfg struct {
		AllowedHosts []string `json:"allowed_hosts"`
	}
	json.Unmarshal(n.Config, &cfg)
	return cfg.AllowedHosts
}

// EnvironmentVersion is the snapshot at one version (env vars excluded).
type EnvironmentVersion struct {
	Environment
	CreatedAt time.Time
}

// EnvironmentInput is a validated create request.
type EnvironmentInput struct {
	Name        string
	Packages    map[string][]string
	EnvVars     map[string]string
	SetupScript string
	Networking  Networking
}

// EnvironmentPatch is a validated update: nil fields are left alone.
// EnvVars replaces the whole map.
type EnvironmentPatch struct {
	Version     int
	Name        *string
	Packages    map[string][]string
	EnvVars     map[string]string
	SetupScript *string
	Networking  *Networking
}

const environmentColumns = `id, user_id, name, packages, setup_script, networking_type, networking_config,
	version, created_at, updated_at, archived_at`

func scanEnvironment(s scanner) (*Environment, error) {
	var e Environment
	var pkgs, netCfg, created, updated string
	var archived sql.NullString
	if err := s.Scan(&e.ID, &e.UserID, &e.Name, &pkgs, &e.SetupScript, &e.Networking.Type, &netCfg,
		&e.Version, &created, &updated, &archived); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(pkgs), &e.Packages); err != nil {
		return nil, err
	}
	e.Networking.Config = json.RawMessage(netCfg)
	e.CreatedAt, _ = ParseTime(created)
	e.UpdatedAt, _ = ParseTime(updated)
	e.ArchivedAt = parseNullTime(archived)
	return &e, nil
}

func environmentNotFound() error { return Errorf(NotFound, "Environment not found") }

func getEnvironment(ctx context.Context, q querier, userID, id string) (*Environment, error) {
	e, err := scanEnvironment(q.QueryRowContext(ctx, `SELECT `+environmentColumns+` FROM environments WHERE id = ? AND user_id = ?`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, environmentNotFound()
	}
	return e, err
}

// GetEnvironment returns one of the user's environments, archived or not.
func (db *DB) GetEnvironment(ctx context.Context, userID, id string) (*Environment, error) {
	return getEnvironment(ctx, db.reader, userID, id)
}

// ListEnvironments returns the user's environments, newest first; archived
// ones only when includeArchived.
func (db *DB) ListEnvironments(ctx context.Context, userID string, includeArchived bool) ([]*Environment, error) {
	q := `SELECT ` + environmentColumns + ` FROM environments WHERE user_id = ?`
	if !includeArchived {
		q += ` AND archived_at IS NULL`
	}
	rows, err := db.reader.QueryContext(ctx, q+` ORDER BY id DESC`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*Environment{}
	for rows.Next() {
		e, err := scanEnvironment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func duplicateEnvName(name string) error {
	return Errorf(Conflict, "An active environment named %s already exists", PyRepr(name))
}

// activeNameTaken reports whether another active environment of the user
// has that name.
func activeNameTaken(ctx context.Context, tx *Tx, userID, name, exceptID string) (bool, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM environments WHERE user_id = ? AND name = ? AND archived_at IS NULL AND id != ?`,
		userID, name, exceptID).Scan(&n)
	return n > 0, err
}

// sealEnvVars encrypts an env var map bound to its environment; an empty map
// is stored as NULL.
func (db *DB) sealEnvVars(envID string, vars map[string]string) (any, error) {
	if len(vars) == 0 {
		return nil, nil
	}
	plain, err := json.Marshal(vars)
	if err != nil {
		return nil, err
	}
	return db.crypt.seal(plain, "environment:"+envID+":env_vars")
}

func (db *DB) openEnvVars(envID string, sealed []byte) (map[string]string, error) {
	out := map[string]string{}
	if len(sealed) == 0 {
		return out, nil
	}
	plain, err := db.crypt.open(sealed, "environment:"+envID+":env_vars")
	if err != nil {
		return nil, errors.New("decrypt env_vars: wrong key file or corrupted data")
	}
	return out, json.Unmarshal(plain, &out)
}

// CreateEnvironment stores a new environment at version 1 with its snapshot.
func (db *DB) CreateEnvironment(ctx context.Context, userID string, in EnvironmentInput) (*Environment, error) {
	var e *Environment
	err := db.write(ctx, func(tx *Tx) error {
		taken, err := activeNameTaken(ctx, tx, userID, in.Name, "")
		if err != nil {
			return err
		}
		if taken {
			return duplicateEnvName(in.Name)
		}
		e = &Environment{ID: NewID(), UserID: userID, Name: in.Name, Packages: in.Packages, SetupScript: in.SetupScript,
			Networking: in.Networking, Version: 1, CreatedAt: tx.Now, UpdatedAt: tx.Now}
		if e.Packages == nil {
			e.Packages = map[string][]string{}
		}
		e.Networking.Config = orEmpty(e.Networking.Config, "{}")
		sealed, err := db.sealEnvVars(e.ID, in.EnvVars)
		if err != nil {
			return err
		}
		pkgs, _ := json.Marshal(e.Packages)
		if _, err := tx.ExecContext(ctx, `INSERT INTO environments(id, user_id, name, packages, env_vars, setup_script,
			networking_type, networking_config, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
			e.ID, userID, e.Name, string(pkgs), sealed, e.SetupScript, e.Networking.Type, string(e.Networking.Config),
			e.Version, tx.Stamp(), tx.Stamp()); err != nil {
			return err
		}
		return snapshotEnvironment(ctx, tx, e, sealed)
	})
	return e, err
}

func snapshotEnvironment(ctx context.Context, tx *Tx, e *Environment, sealedVars any) error {
	pkgs, _ := json.Marshal(e.Packages)
	_, err := tx.ExecContext(ctx, `INSERT INTO environment_versions(environment_id, version, name, packages, env_vars,
		setup_script, networking_type, networking_config, created_at) VALUES (?,?,?,?,?,?,?,?,?)`,
		e.ID, e.Version, e.Name, string(pkgs), sealedVars, e.SetupScript, e.Networking.Type, string(e.Networking.Config), tx.Stamp())
	return err
}

// UpdateEnvironment applies p under optimistic concurrency; a patch that
// changes nothing keeps the version and writes nothing.
func (db *DB) UpdateEnvironment(ctx context.Context, userID, id string, p EnvironmentPatch) (*Environment, error) {
	var e *Environment
	err := db.write(ctx, func(tx *Tx) error {
		cur, sealed, err := environmentForUpdate(ctx, tx, userID, id)
		if err != nil {
			return err
		}
		if p.Version != cur.Version {
			return Errorf(Conflict, "Version mismatch: expected %d, got %d", cur.Version, p.Version)
		}
		next := *cur
		changed := false
		if p.Name != nil && *p.Name != cur.Name {
			next.Name, changed = *p.Name, true
		}
		if p.Packages != nil && !packagesEqual(p.Packages, cur.Packages) {
			next.Packages, changed = p.Packages, true
		}
		if p.SetupScript != nil && *p.SetupScript != cur.SetupScript {
			next.SetupScript, changed = *p.SetupScript, true
		}
		if p.Networking != nil && !p.Networking.Equal(cur.Networking) {
			next.Networking, changed = *p.Networking, true
			next.Networking.Config = orEmpty(next.Networking.Config, "{}")
		}
		newSealed := any(nil)
		if len(sealed) > 0 {
			newSealed = sealed
		}
		if p.EnvVars != nil {
			old, err := db.openEnvVars(id, sealed)
			if err != nil {
				return err
			}
			if !maps.Equal(old, p.EnvVars) {
				changed = true
				if newSealed, err = db.sealEnvVars(id, p.EnvVars); err != nil {
					return err
				}
			}
		}
		if !changed {
			e = cur
			return nil
		}
		if next.Name != cur.Name {
			taken, err := activeNameTaken(ctx, tx, userID, next.Name, id)
			if err != nil {
				return err
			}
			if taken {
				return duplicateEnvName(next.Name)
			}
		}
		next.Version++
		next.UpdatedAt = tx.Now
		pkgs, _ := json.Marshal(next.Packages)
		if _, err := tx.ExecContext(ctx, `UPDATE environments SET name=?, packages=?, env_vars=?, setup_script=?,
			networking_type=?, networking_config=?, version=?, updated_at=? WHERE id=?`,
			next.Name, string(pkgs), newSealed, next.SetupScript, next.Networking.Type, string(next.Networking.Config),
			next.Version, tx.Stamp(), id); err != nil {
			return err
		}
		e = &next
		return snapshotEnvironment(ctx, tx, e, newSealed)
	})
	return e, err
}

// environmentForUpdate loads an environment with its sealed env vars and
// refuses archived ones.
func environmentForUpdate(ctx context.Context, tx *Tx, userID, id string) (*Environment, []byte, error) {
	cur, err := getEnvironment(ctx, tx, userID, id)
	if err != nil {
		return nil, nil, err
	}
	if cur.ArchivedAt != nil {
		return nil, nil, Errorf(Conflict, "Cannot update an archived environment")
	}
	var sealed []byte
	err = tx.QueryRowContext(ctx, `SELECT env_vars FROM environments WHERE id = ?`, id).Scan(&sealed)
	return cur, sealed, err
}

// CheckEnvironmentUpdatable returns the errors an update would hit before
// its body is read (404, archived 409), as the contract orders them.
func (db *DB) CheckEnvironmentUpdatable(ctx context.Context, userID, id string) error {
	e, err := db.GetEnvironment(ctx, userID, id)
	if err != nil {
		return err
	}
	if e.ArchivedAt != nil {
		return Errorf(Conflict, "Cannot update an archived environment")
	}
	return nil
}

func packagesEqual(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// ArchiveEnvironment sets archived_at and frees the name for reuse.
func (db *DB) ArchiveEnvironment(ctx context.Context, userID, id string) (*Environment, error) {
	var e *Environment
	err := db.write(ctx, func(tx *Tx) error {
		var err error
		if e, err = getEnvironment(ctx, tx, userID, id); err != nil {
			return err
		}
		if e.ArchivedAt != nil {
			return Errorf(Conflict, "Environment is already archived")
		}
		now := tx.Now
		e.ArchivedAt, e.UpdatedAt = &now, now
		_, err = tx.ExecContext(ctx, `UPDATE environments SET archived_at = ?, updated_at = ? WHERE id = ?`, tx.Stamp(), tx.Stamp(), id)
		return err
	})
	return e, err
}

// DeleteEnvironment removes an environment and its versions. Agents that
// used it as their default lose it. Refused while any session references it.
func (db *DB) DeleteEnvironment(ctx context.Context, userID, id string) error {
	return db.write(ctx, func(tx *Tx) error {
		if _, err := getEnvironment(ctx, tx, userID, id); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE environment_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return Errorf(Conflict, "Cannot delete environment with existing sessions")
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM environments WHERE id = ?`, id)
		return err
	})
}

// EnvironmentVersions lists the snapshots, highest version first.
func (db *DB) EnvironmentVersions(ctx context.Context, userID, id string) ([]*EnvironmentVersion, error) {
	if _, err := getEnvironment(ctx, db.reader, userID, id); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT environment_id, version, name, packages, setup_script, networking_type,
		networking_config, created_at FROM environment_versions WHERE environment_id = ? ORDER BY version DESC`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*EnvironmentVersion{}
	for rows.Next() {
		var v EnvironmentVersion
		var pkgs, netCfg, created string
		if err := rows.Scan(&v.ID, &v.Version, &v.Name, &pkgs, &v.SetupScript, &v.Networking.Type, &netCfg, &created); err != nil {
			return nil, err
		}
		v.UserID = userID
		if err := json.Unmarshal([]byte(pkgs), &v.Packages); err != nil {
			return nil, err
		}
		v.Networking.Config = json.RawMessage(netCfg)
		v.CreatedAt, _ = ParseTime(created)
		out = append(out, &v)
	}
	return out, rows.Err()
}

// EnvironmentSecrets decrypts an environment's current env vars (the web
// UI lists their names). A session's come from SessionSecrets: those of
// the version it runs.
func (db *DB) EnvironmentSecrets(ctx context.Context, userID, id string) (map[string]string, error) {
	var sealed []byte
	err := db.reader.QueryRowContext(ctx, `SELECT env_vars FROM environments WHERE id = ? AND user_id = ?`, id, userID).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, environmentNotFound()
	}
	if err != nil {
		return nil, err
	}
	return db.openEnvVars(id, sealed)
}
