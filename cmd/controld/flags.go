package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/stapes-relay/stapes/internal/envflag"
	"io"
	"os"
	"strings"
	"time"
)

type options struct {
	verb            string // "serve" or "migrate"
	databaseURL     string
	readDatabaseURL string
	maxConns        int
	listen          string
	opsAddr         string
	operatorFile    string
	secretFile      string
	tlsCert         string
	tlsKey          string
	certOut         string
	plain           bool
	migrate         bool
	logLevel        string
	shutdownTimeout time.Duration
	sessionTTL      time.Duration
	apiTokenTTL     time.Duration
	relayLiveness   time.Duration
	loginPerIP      int
	loginPerName    int
	mapPerIP        int
	placementMaxAge time.Duration
	turnSecretFile  string
}

const usageHead = `controld runs the stapes control plane over Postgres.

It serves the HTTPS API (clinician login, patients, fitting sessions with
Ed25519 session tokens, ending them; the operator API with scheduled jobs;
the relay API: registration, heartbeats, token keys, relay map, sync;
patients' push registrations; the public relay map /v1/map) on --listen,
its OpenAPI document at /openapi.json, and /metrics, /healthz, /readyz on
--ops. It runs the scheduled jobs that are due. SIGTERM or SIGINT shuts
down gracefully (in-flight requests finish, up to --shutdown-timeout).

Usage:
  controld [serve] [flags]   serve the API (the default verb)
  controld migrate [flags]   apply the embedded database migrations and exit

Every flag can also be set from the environment as STAPES_<FLAG> with
dashes as underscores (e.g. STAPES_LISTEN=:8080); --database-url also
falls back to DATABASE_URL.

Flags:
`

func parseFlags(args []string, out io.Writer) (*options, error) {
	o := &options{verb: "serve"}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "serve", "migrate":
			o.verb, args = args[0], args[1:]
		case "help":
			args = []string{"--help"}
		default:
			return nil, fmt.Errorf("unknown verb %q (want serve or migrate)", args[0])
		}
	}
	fs := flag.NewFlagSet("controld", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.databaseURL, "database-url", "", "Postgres DSN (postgres://user:pass@host:5432/db); default $DATABASE_URL; required")
	fs.StringVar(&o.readDatabaseURL, "read-database-url", "", "read-only replica DSN for heavy reads (default: the primary)")
	fs.IntVar(&o.maxConns, "max-db-conns", 10, "size of the Postgres connection pool")
	fs.StringVar(&o.listen, "listen", ":8080", "API address (HTTPS, or HTTP with --plain)")
	fs.StringVar(&o.opsAddr, "ops", "127.0.0.1:9091", "ops address: /metrics, /healthz, /readyz (plain HTTP)")
	fs.StringVar(&o.operatorFile, "operator-token-file", "", "file holding the operator API's bearer token (at least 16 characters); without it the operator API is off")
	fs.StringVar(&o.secretFile, "secret-file", "./controld-secret", "file holding controld's secret (seals signing keys, signs API tokens; the same on every controld of a deployment); created with a random secret if missing")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate PEM; without it a self-signed one is generated for local use")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key PEM, with --tls-cert")
	fs.StringVar(&o.certOut, "self-signed-out", "./controld-cert.pem", "where to write the generated self-signed certificate PEM")
	fs.BoolVar(&o.plain, "plain", false, "serve the API over plain HTTP (local development only)")
	fs.BoolVar(&o.migrate, "migrate", false, "serve: apply the database migrations before serving")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "longest graceful shutdown")
	fs.DurationVar(&o.sessionTTL, "session-token-ttl", time.Hour, "lifetime of the relay session tokens minted per fitting session (at most 24h)")
	fs.DurationVar(&o.apiTokenTTL, "api-token-ttl", 12*time.Hour, "lifetime of a clinician's API token")
	fs.DurationVar(&o.relayLiveness, "relay-liveness", 30*time.Second, "a relay without a heartbeat for this long is not given new sessions")
	fs.IntVar(&o.loginPerIP, "login-per-ip", 60, "login attempts one source address may make a minute (negative: unlimited)")
	fs.IntVar(&o.loginPerName, "login-per-name", 10, "login attempts that may name one e-mail address a minute (negative: unlimited)")
	fs.IntVar(&o.mapPerIP, "map-per-ip", 120, "GET /v1/map requests one source address may make a minute (negative: unlimited)")
	fs.StringVar(&o.turnSecretFile, "turn-secret-file", "", "relays' TURN REST shared secrets, one per line, newest first (relayd's --turn-secret-file); with it session answers carry TURN ice_servers")
	fs.DurationVar(&o.placementMaxAge, "placement-max-age", 24*time.Hour, "how long the RTTs clients report count for placing sessions")
	if err := envflag.Parse(fs, args, out, usageHead); err != nil {
		return nil, err
	}
	if o.databaseURL == "" {
		o.databaseURL = os.Getenv("DATABASE_URL")
	}
	if o.databaseURL == "" {
		return nil, errors.New("--database-url (or DATABASE_URL) is required")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.plain && o.tlsCert != "" {
		return nil, errors.New("--plain and --tls-cert exclude each other")
	}
	if o.loginPerIP == 0 || o.loginPerName == 0 || o.mapPerIP == 0 {
		return nil, errors.New("--login-per-ip, --login-per-name and --map-per-ip must not be 0 (that would refuse every request; negative: unlimited)")
	}
	if o.placementMaxAge <= 0 {
		return nil, errors.New("--placement-max-age must be positive")
	}
	if o.maxConns < 1 {
		return nil, errors.New("--max-db-conns must be at least 1")
	}
	return o, nil
}
