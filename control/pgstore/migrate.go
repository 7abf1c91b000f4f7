package pgstore

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrateLockKey is the advisory lock Migrate holds (an arbitrary
// constant, "stapes" in ASCII, unlikely to collide with another
// application's lock in the same database).
const migrateLockKey int64 = 0x737461706573

// migration is one embedded migration file, NNNN_name.sql.
type migration struct {
	version int
	name    string // file name
	sql     string
	sum     string // hex sha256 of sql
}

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// migrations lists the embedded migrations in version order.
func migrations() ([]migration, error) {
	ents, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMigration, err)
	}
	var ms []migration
	for _, e := range ents {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%w: file name %q is not NNNN_name.sql", ErrMigration, e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMigration, err)
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b), sum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("%w: %s: versions must run 1, 2, 3… without gaps", ErrMigration, m.name)
		}
	}
	return ms, nil
}

// Migrate applies, in one transaction holding an advisory lock (so
// concurrent callers take turns), every embedded migration the database
// has not recorded in schema_migrations, and returns the names of those it
// applied (none on a database already up to date). Migrations are forward
// only: one already applied whose embedded file has changed is an error
// wrapping ErrMigration, and nothing is applied. Versions the database has
// but this binary does not know (a newer controld migrated it) are left
// alone.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	var applied []string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			sha256     text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		done := map[int]string{}
		rows, err := tx.Query(ctx, "SELECT version, sha256 FROM schema_migrations")
		if err != nil {
			return err
		}
		var v int
		var sum string
		if _, err := pgx.ForEachRow(rows, []any{&v, &sum}, func() error { done[v] = sum; return nil }); err != nil {
			return err
		}
		for _, m := range ms {
			if sum, ok := done[m.version]; ok {
				if sum != m.sum {
					return fmt.Errorf("%w: %s was applied with different contents (migrations are forward-only: add a new one)", ErrMigration, m.name)
				}
				continue
			}
			if _, err := tx.Conn().PgConn().Exec(ctx, m.sql).ReadAll(); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)", m.version, m.name, m.sum); err != nil {
				return err
			}
			applied = append(applied, m.name)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("migrate", err)
	}
	return applied, nil
}
