package controlserver

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/controltest"
	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
)

const (
	testOperator = "operator-token-for-tests"
	testPassword = "correct horse battery"
)

// cheap argon2id parameters: tests hash many passwords on 2 cores.
var cheap = password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

var testSecret = bytes.Repeat([]byte{7}, 32)

func quiet() *slog.Logger {
	if os.Getenv("STAPES_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// env is a controld API on a fresh, migrated database, served by an
// httptest server on loopback.
type env struct {
	t   testing.TB
	st  *pgstore.Store
	srv *Server
	hs  *httptest.Server
}

func newEnv(t testing.TB, adjust ...func(*Config)) *env {
	t.Helper()
	st, err := pgstore.Open(ctxT(t), pgstore.Config{DSN: pgtest.Start(t), Logger: quiet(), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := st.Migrate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// Tests log in many times from one address; TestLoginRateLimit sets
	// the limits it tests.
	cfg := Config{Store: st, Secret: testSecret, OperatorToken: testOperator, Password: &cheap, Logger: quiet(),
		LoginPerIP: -1, LoginPerName: -1, MapPerIP: -1}
	for _, f := range adjust {
		f(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, srv: srv, hs: newServer(t, srv)}
}

// newServer serves srv on loopback until the test ends.
func newServer(t testing.TB, srv *Server) *httptest.Server {
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

// call sends a request with a bearer token ("" for none) and a JSON body
// (nil for none) and returns the status and body.
func (e *env) call(method, path, bearer string, body any) (int, []byte) {
	e.t.Helper()
	return e.api().Do(method, path, bearer, body)
}

// must calls and fails the test unless the status is want; it decodes the
// answer into out when out is not nil.
func (e *env) must(want int, method, path, bearer string, body, out any) {
	e.t.Helper()
	e.api().Call(want, method, path, bearer, body, out)
}

func (e *env) api() *controltest.API {
	return &controltest.API{T: e.t, Base: e.hs.URL, Client: e.hs.Client()}
}

// op sends an operator request that must create something (201).
func (e *env) op(path string, body any) {
	e.t.Helper()
	e.must(http.StatusCreated, "POST", path, testOperator, body, nil)
}

// clinic seeds, through the operator API, tenant tid with clinician c1
// (doc@<tid>.example), patients p1 (in c1's care, device <tid>-SN1 of
// model m1) and p2 (not in care, device <tid>-SN2).
func (e *env) clinic(tid string) {
	e.t.Helper()
	e.op("/v1/operator/tenants", map[string]any{"id": tid, "name": "Clinic " + tid})
	e.op("/v1/operator/tenants/"+tid+"/clinicians", map[string]any{"id": "c1", "email": "doc@" + tid + ".example", "password": testPassword})
	for _, p := range []string{"p1", "p2"} {
		e.op("/v1/operator/tenants/"+tid+"/patients", map[string]any{"id": p, "display_name": "Patient " + p})
	}
	e.op("/v1/operator/tenants/"+tid+"/devices", map[string]any{"serial": tid + "-SN1", "model": "m1", "firmware": "1.0", "patient_id": "p1"})
	e.op("/v1/operator/tenants/"+tid+"/devices", map[string]any{"serial": tid + "-SN2", "model": "m1", "patient_id": "p2"})
	e.must(http.StatusOK, "POST", "/v1/operator/tenants/"+tid+"/care", testOperator, map[string]any{"clinician_id": "c1", "patient_id": "p1"}, nil)
}

// login logs doc@<tid>.example in and returns the API token.
func (e *env) login(tid string) string {
	e.t.Helper()
	var a loginAnswer
	e.must(http.StatusOK, "POST", "/v1/login", "", map[string]any{"email": "doc@" + tid + ".example", "password": testPassword}, &a)
	return a.Token
}

// relayNode creates relay id in region and returns its node credential;
// with ws set it registers the address and heartbeats, so it is live.
func (e *env) relayNode(id, region, ws string, load int) string {
	e.t.Helper()
	var c struct {
		Credential string `json:"credential"`
	}
	e.must(http.StatusCreated, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": id, "region": region, "capacity": 100}, &c)
	if ws != "" {
		e.must(http.StatusOK, "POST", "/v1/relay/register", c.Credential, map[string]any{"addresses": map[string]string{"ws": ws, "quic": "quic://" + id}, "version": "test"}, nil)
		e.must(http.StatusOK, "POST", "/v1/relay/heartbeat", c.Credential, map[string]any{"load": load, "draining": false}, nil)
	}
	return c.Credential
}

// count returns the rows of a table matching a condition.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.st.Pool().QueryRow(ctxT(e.t), "SELECT count(*) FROM "+query, args...).Scan(&n); err != nil {
		e.t.Fatalf("count %s: %v", query, err)
	}
	return n
}

// testStore is a store whose database is never contacted (New does not
// connect), for tests of the server's shape.
func testStore(t testing.TB) *pgstore.Store {
	t.Helper()
	st, err := pgstore.Open(ctxT(t), pgstore.Config{DSN: "postgres://nobody@127.0.0.1:1/none", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// pgstoreChange is a config change from base to base+1 made outside any
// session.
func pgstoreChange(tenant, serial string, base uint64) pgstore.ConfigChange {
	return pgstore.ConfigChange{TenantID: tenant, Serial: serial, Base: base, Params: map[string]int64{"gain": 15}}
}
