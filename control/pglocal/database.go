package pglocal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CreateDatabase creates database name unless it exists already.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	if s.PID() == 0 {
		return ErrNotRunning
	}
	return CreateDatabase(ctx, s.SocketDSN("postgres"), name)
}

// CreateDatabase connects to the server at dsn and creates database name
// unless it exists already.
func CreateDatabase(ctx context.Context, dsn, name string) error {
	return adminExec(ctx, dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize(), "42P04") // duplicate_database
}

// DropDatabase connects to the server at dsn and drops database name,
// ending its sessions, if it exists.
func DropDatabase(ctx context.Context, dsn, name string) error {
	return adminExec(ctx, dsn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)", "")
}

func adminExec(ctx context.Context, dsn, sql, okCode string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pglocal: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, sql); err != nil {
		var pe *pgconn.PgError
		if okCode != "" && errors.As(err, &pe) && pe.Code == okCode {
			return nil
		}
		return fmt.Errorf("pglocal: %s: %w", sql, err)
	}
	return nil
}
