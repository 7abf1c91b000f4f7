package scenario

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/pglocal"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// syncRelayID is the relay node the sync scenario registers.
const syncRelayID = "bench-sync"

// syncStack is the control plane of the sync scenario: a private
// PostgreSQL from the system's binaries, controld's API in this process
// on a loopback listener (plain HTTP) over a migrated pgstore, and a relay
// node registered through the operator API, with its credential.
type syncStack struct {
	pg   *pglocal.Server
	st   *pgstore.Store
	hs   *http.Server
	done chan error
	url  string
	cred string
	log  *slog.Logger
	logf *os.File
}

// startSyncStack starts Postgres, controld and registers the relay node.
// On error everything started is stopped.
func startSyncStack(ctx context.Context, e *Env) (_ *syncStack, err error) {
	s := &syncStack{done: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.logf, err = e.logFile("sync"); err != nil {
		return nil, err
	}
	s.log = slog.New(slog.NewTextHandler(s.logf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bins, err := pglocal.FindBinaries(ctx)
	if err != nil && os.Geteuid() == 0 {
		e.Progress.Note("  sync: PostgreSQL server binaries not found; installing the Debian postgresql package")
		bins, err = pglocal.EnsureInstalled(ctx, s.log)
	}
	if err != nil {
		return nil, fmt.Errorf("scenario: sync needs a PostgreSQL server: %w", err)
	}
	// As root the server runs as its own user, which must traverse the
	// scratch directory (os.MkdirTemp makes it 0700).
	if err := os.Chmod(e.Dir, 0o755); err != nil {
		return nil, err
	}
	s.pg, err = pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(e.Dir, e.Session("pg")), Logger: s.log, Binaries: &bins})
	if err != nil {
		return nil, err
	}
	e.track(func() { s.pg.Close() })
	if err := s.pg.CreateDatabase(ctx, "stapes"); err != nil {
		return nil, err
	}
	if s.st, err = pgstore.Open(ctx, pgstore.Config{DSN: s.pg.DSN("stapes"), Logger: s.log}); err != nil {
		return nil, err
	}
	if _, err := s.st.Migrate(ctx); err != nil {
		return nil, err
	}
	for _, t := range []string{"messages", "receipts", "audit_log"} {
		// The baseline's plain tables: same columns, key and indexes.
		if _, err := s.st.Pool().Exec(ctx, fmt.Sprintf("CREATE TABLE raw_%s (LIKE %s INCLUDING ALL)", t, t)); err != nil {
			return nil, fmt.Errorf("scenario: baseline table: %w", err)
		}
	}
	operator := rand.Text()
	srv, err := controlserver.New(controlserver.Config{Store: s.st, Secret: []byte(rand.Text() + rand.Text()),
		OperatorToken: operator, Logger: s.log})
	if err != nil {
		return nil, err
	}
	if _, err := srv.EnsureSigningKey(ctx); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.url = "http://" + ln.Addr().String()
	s.hs = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { s.done <- s.hs.Serve(ln) }()
	var node struct {
		Credential string `json:"credential"`
	}
	req := map[string]any{"id": syncRelayID, "region": "local", "capacity": 100}
	if err := s.call(ctx, "/v1/operator/relays", operator, req, &node); err != nil {
		return nil, fmt.Errorf("scenario: registering the relay node: %w", err)
	}
	s.cred = node.Credential
	return s, nil
}

// call POSTs a JSON body to controld and decodes the 2xx answer into out.
func (s *syncStack) call(ctx context.Context, path, bearer string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, out)
}

// procs are the processes sampled during a run: this process (relay,
// syncer, controld, the baseline's pgx) and Postgres with its backends.
func (s *syncStack) procs() []bench.Proc {
	return []bench.Proc{bench.Self(), {Name: "postgres", Pid: s.pg.PID(), Tree: true}}
}

// syncer returns a syncer of r's outbox with relayd's defaults (5,000
// entries per batch, 100 ms idle interval) whose requests go through tap.
func (s *syncStack) syncer(r *syncRelay, tap *syncTap) (*control.Syncer, error) {
	return control.NewSyncer(control.SyncConfig{Outbox: r.st, Relay: syncRelayID, URL: s.url, Credential: s.cred,
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: tap}, Logger: s.log})
}

// Close stops controld, the store and Postgres (idempotent).
func (s *syncStack) Close() {
	if s.hs != nil {
		s.hs.Close()
		<-s.done
		s.hs = nil
	}
	if s.st != nil {
		s.st.Close()
		s.st = nil
	}
	if s.pg != nil {
		if err := s.pg.Close(); err != nil && s.log != nil {
			s.log.Warn("stopping PostgreSQL", "err", err)
		}
	}
	if s.logf != nil {
		s.logf.Close()
		s.logf = nil
	}
}

// syncRelay is a relay in this process, configured like relayd from the
// environment's keyring and certificate (WebSocket over TLS only), whose
// store the scenario's syncers ship.
type syncRelay struct {
	st   *storage.Store
	srv  *relay.Server
	ln   net.Listener
	done chan error
}

func startSyncRelay(e *Env, log *slog.Logger) (*syncRelay, error) {
	st, err := storage.Open(filepath.Join(e.Dir, e.Session("sync-relay")), storage.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	kr, err := token.LoadKeyring(e.Keyring())
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := relay.New(relay.Config{Store: st, Auth: kr, RelayID: syncRelayID, Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		st.Close()
		return nil, err
	}
	r := &syncRelay{st: st, srv: srv, ln: ln, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ln, nil, e.ServerTLS()) }()
	return r, nil
}

func (r *syncRelay) Addr() string { return r.ln.Addr().String() }

// Close stops the relay and closes its store.
func (r *syncRelay) Close() {
	r.srv.Close()
	<-r.done
	r.ln.Close()
	r.st.Close()
}
