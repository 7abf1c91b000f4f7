package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SystemTenant owns deployment-wide rows: shared relays, global feature
// flags and model limits, signing keys. Migration 0001 creates it.
const SystemTenant = "_system"

// Store is the control plane's PostgreSQL store. It is safe for
// concurrent use.
type Store struct {
	log       *slog.Logger
	pool      *pgxpool.Pool // primary
	read      *pgxpool.Pool // replica, or pool
	close     sync.Once
	fallbacks atomic.Int64 // ingest batches that took the idempotent path
}

// Open creates the connection pools. It does not contact the server:
// connections are made on first use (call Ping to check the DSN, Migrate
// to bring the schema up to date).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.EnsureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pc, err := poolConfig(cfg.DSN, cfg.MaxConns, cfg.ApplicationName)
	if err != nil {
		return nil, fmt.Errorf("%w: DSN: %v", ErrInvalidConfig, err)
	}
	pc.AfterConnect = createStaging
	s := &Store{log: cfg.Logger}
	if s.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	s.read = s.pool
	if cfg.ReadDSN != "" {
		rc, err := poolConfig(cfg.ReadDSN, cfg.ReadMaxConns, cfg.ApplicationName+"-read")
		if err != nil {
			s.pool.Close()
			return nil, fmt.Errorf("%w: ReadDSN: %v", ErrInvalidConfig, err)
		}
		// Writes through the read pool fail even if ReadDSN names the
		// primary.
		rc.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
		if s.read, err = pgxpool.NewWithConfig(ctx, rc); err != nil {
			s.pool.Close()
			return nil, fmt.Errorf("pgstore: open read pool: %w", err)
		}
	}
	return s, nil
}

func poolConfig(dsn string, maxConns int32, app string) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	pc.MaxConns = maxConns
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = app
	}
	pc.ConnConfig.RuntimeParams["timezone"] = "UTC"
	return pc, nil
}

// Close closes the pools, waiting for acquired connections to be
// released. It is idempotent.
func (s *Store) Close() {
	s.close.Do(func() {
		if s.read != s.pool {
			s.read.Close()
		}
		s.pool.Close()
	})
}

// Pool is the primary's pool, for queries this package does not offer.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// ReadPool is the read-only pool: the replica's when Config.ReadDSN is
// set, else the primary's.
func (s *Store) ReadPool() *pgxpool.Pool { return s.read }

// Ping checks that the primary (and the replica, if configured) answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return wrap("ping", err)
	}
	if s.read != s.pool {
		if err := s.read.Ping(ctx); err != nil {
			return wrap("ping replica", err)
		}
	}
	return nil
}

// Migrate applies the embedded migrations the database lacks (see the
// package function Migrate) and logs what it applied.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	applied, err := Migrate(ctx, s.pool)
	if len(applied) > 0 {
		s.log.Info("database migrated", "applied", applied)
	}
	return applied, err
}

// inTx runs fn in a transaction on the primary, committing if it returns
// nil.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}
