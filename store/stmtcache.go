package store

import (
	"context"
	"database/sql"
	"sync"
)

// pool is a database/sql pool whose queries are prepared once per
// connection and kept: preparing is most of a small query's cost with
// modernc's SQLite (a fifth of the server's CPU on the session-start path
// before this). Every query text aod sends is its own constant or a shape
// of one (a row count), so the cache stays small; past maxStmts texts it
// stops growing and the rest run unprepared.
type pool struct {
	*sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

const maxStmts = 512

func newPool(db *sql.DB) *pool { return &pool{DB: db, stmts: map[string]*sql.Stmt{}} }

// stmt is query's prepared statement, prepared now if need be; nil when
// it cannot be kept.
func (p *pool) stmt(ctx context.Context, query string) *sql.Stmt {
	if s, ok := p.cached(query); ok || s != nil {
		return s
	}
	return p.prepare(ctx, query)
}

// cached is query's kept statement; ok is false when there is none but
// there is room for one.
func (p *pool) cached(query string) (s *sql.Stmt, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok = p.stmts[query]
	return s, ok || len(p.stmts) >= maxStmts
}

func (p *pool) prepare(ctx context.Context, query string) *sql.Stmt {
	s, err := p.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil // the query itself will say what is wrong
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.stmts[query]; ok { // prepared meanwhile by another caller
		s.Close()
		return old
	}
	if len(p.stmts) >= maxStmts {
		s.Close()
		return nil
	}
	p.stmts[query] = s
	return s
}

func (p *pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := p.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return p.DB.QueryContext(ctx, query, args...)
}

func (p *pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := p.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return p.DB.QueryRowContext(ctx, query, args...)
}

func (p *pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := p.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return p.DB.ExecContext(ctx, query, args...)
}

// Close closes the kept statements, then the pool.
func (p *pool) Close() error {
	p.mu.Lock()
	for _, s := range p.stmts {
		s.Close()
	}
	p.stmts = map[string]*sql.Stmt{}
	p.mu.Unlock()
	return p.DB.Close()
}

// A transaction's queries use the writer's kept statements. The writer
// has one connection, which the transaction holds, so a query not kept yet
// runs unprepared and is prepared once the transaction has ended
// (DB.write calls keepMissed).

func (tx *Tx) kept(query string) *sql.Stmt {
	s, ok := tx.db.writer.cached(query)
	if !ok {
		tx.missed = append(tx.missed, query)
	}
	return s
}

func (tx *Tx) keepMissed(ctx context.Context) {
	for _, q := range tx.missed {
		tx.db.writer.stmt(ctx, q)
	}
	tx.missed = nil
}

func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := tx.kept(query); s != nil {
		return tx.Tx.StmtContext(ctx, s).QueryContext(ctx, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := tx.kept(query); s != nil {
		return tx.Tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return tx.Tx.QueryRowContext(ctx, query, args...)
}

func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := tx.kept(query); s != nil {
		return tx.Tx.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return tx.Tx.ExecContext(ctx, query, args...)
}
