package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/controltest"
	"github.com/stapes-relay/stapes/control/pglocal"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
)

// startControld runs controld's API in process over a private Postgres
// (migrated, with a signing key) for relayd tests, with operator as the
// operator token; configure adjusts its config. Everything stops at the
// end of the test. It returns the API server, a client of it and the store.
func startControld(ctx context.Context, t *testing.T, operator string, log *slog.Logger, configure func(*controlserver.Config)) (*httptest.Server, *controltest.API, *pgstore.Store) {
	t.Helper()
	pg := pgtest.NewServer(t, pglocal.Options{})
	if err := pg.CreateDatabase(ctx, "stapes"); err != nil {
		t.Fatal(err)
	}
	st, err := pgstore.Open(ctx, pgstore.Config{DSN: pg.DSN("stapes"), Logger: log, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := controlserver.Config{Store: st, Secret: bytes.Repeat([]byte{7}, 32), OperatorToken: operator,
		Password: &password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, Logger: log}
	if configure != nil {
		configure(&cfg)
	}
	csrv, err := controlserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := csrv.EnsureSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(csrv.Handler())
	t.Cleanup(hs.Close)
	return hs, &controltest.API{T: t, Base: hs.URL, Client: hs.Client()}, st
}
