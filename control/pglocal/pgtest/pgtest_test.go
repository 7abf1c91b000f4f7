package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stapes-relay/stapes/control/pglocal"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if _, err := os.Stat(filepath.Join(os.TempDir(), "stapes-pgtest-"+strconv.Itoa(os.Getpid()))); !os.IsNotExist(err) {
			println("pgtest: the shared server directory is still there after Stop")
			code = 1
		}
	}
	if err := goleak.Find(); err != nil {
		println(err.Error())
		code = 1
	}
	os.Exit(code)
}

func currentDB(t *testing.T, dsn string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var db string
	var tables int
	if err := c.QueryRow(ctx, "SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')").Scan(&db, &tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("database %s is not empty: %d tables", db, tables)
	}
	if _, err := c.Exec(ctx, "CREATE TABLE mine (v int)"); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestStart: each call gets a database of its own on the shared server.
func TestStart(t *testing.T) {
	a, b := currentDB(t, pgtest.Start(t)), currentDB(t, pgtest.Start(t))
	if a == b {
		t.Errorf("two Starts gave the same database %s", a)
	}
}

// TestDatabaseURL: with DATABASE_URL set, databases are made (and dropped)
// on that server.
func TestDatabaseURL(t *testing.T) {
	srv := pgtest.NewServer(t, pglocal.Options{})
	t.Setenv(pgtest.EnvDSN, srv.DSN("postgres"))
	var name string
	t.Run("inner", func(t *testing.T) {
		name = currentDB(t, pgtest.Start(t))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
}
