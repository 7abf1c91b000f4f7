package main

import (
	"errors"
	"flag"
	"github.com/stapes-relay/stapes/internal/envflag"
	"io"
	"os"
	"strings"
	"time"
)

type options struct {
	listen         string
	opsAddr        string
	dataDir        string
	keyring        string
	tlsCert        string
	tlsKey         string
	plain          bool
	noQUIC         bool
	certOut        string
	relayID        string
	limits         string
	logLevel       string
	maxFrame       int
	helloTimeout   time.Duration
	pingInterval   time.Duration
	ephemeralQueue int
	maxConns       int
	acceptRate     int
	drainTimeout   time.Duration
	drainGrace     time.Duration
	drainRedirect  string
	origins        []string
	delay          time.Duration
	controlURL     string
	credFile       string
	advertise      string
	turn           *turnOptions
	mesh           *meshOptions
}

const usageHead = `relayd runs one stapes relay node.

It serves the session protocol over WebSocket (TCP) and QUIC (UDP, ALPN
stapes/1) on the same port, keeps session logs in a local Pebble directory,
and exposes /metrics, /healthz, /readyz (and pprof to loopback) on the ops
address. SIGTERM drains: admission stops, clients get GOAWAY, and relayd
exits when they are gone or --drain-timeout passes; a second signal closes
at once.

Every flag can also be set from the environment as STAPES_<FLAG> with
dashes as underscores (e.g. STAPES_DATA=/var/lib/stapes).

Usage: relayd [flags]

Flags:
`

func parseFlags(args []string, out io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("relayd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.listen, "listen", ":8443", "address for WebSocket (TCP) and QUIC (UDP), same port")
	fs.StringVar(&o.opsAddr, "ops", "127.0.0.1:9090", "ops address: /metrics, /healthz, /readyz, pprof")
	fs.StringVar(&o.dataDir, "data", "./stapes-data", "Pebble data directory (created if missing)")
	fs.StringVar(&o.keyring, "keyring", "", "token verification keyring JSON (from 'stapes keygen'); required unless --control-url serves the keys")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate PEM; without it a self-signed one is generated for local use")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key PEM, with --tls-cert")
	fs.StringVar(&o.certOut, "self-signed-out", "", "where to write the generated self-signed certificate PEM (default DATA/relay-cert.pem)")
	fs.BoolVar(&o.plain, "plain", false, "serve WebSocket over plain HTTP and no QUIC (local development only)")
	fs.BoolVar(&o.noQUIC, "no-quic", false, "do not serve QUIC")
	fs.StringVar(&o.relayID, "relay-id", "", "name of this relay in logs and metrics (default: host name)")
	fs.StringVar(&o.limits, "limits", "", "per-model safety limits JSON (default: every parameter within ±1200, step ≤ 60)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.IntVar(&o.maxFrame, "max-frame", 64<<10, "largest frame accepted, bytes")
	fs.DurationVar(&o.helloTimeout, "hello-timeout", 10*time.Second, "time a new connection has to send HELLO")
	fs.DurationVar(&o.pingInterval, "ping-interval", 15*time.Second, "keepalive interval; silent peers are closed after three")
	fs.IntVar(&o.ephemeralQueue, "ephemeral-queue", 256, "per-connection queue depth for telemetry/signalling; full queues drop")
	fs.IntVar(&o.maxConns, "max-conns", 100000, "most open client connections; more are closed at accept")
	fs.IntVar(&o.acceptRate, "accept-rate", 2000, "new connections per second (burst twice that); more are closed at accept")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "longest SIGTERM drain before closing")
	fs.DurationVar(&o.drainGrace, "drain-grace", 5*time.Second, "GOAWAY grace given to clients")
	fs.StringVar(&o.drainRedirect, "drain-redirect", "", "URL clients are told to reconnect to when draining")
	origins := fs.String("allowed-origins", "", "comma-separated browser origins allowed to connect (default same origin)")
	fs.StringVar(&o.controlURL, "control-url", "", "controld base URL (https://host:port) to sync session logs to; empty: no sync")
	fs.StringVar(&o.credFile, "node-credential-file", "", "file with this relay's node credential for controld (with --control-url)")
	fs.StringVar(&o.advertise, "advertise", "", "host:port clients reach this relay at, published to controld (default: --listen, 127.0.0.1 for an unspecified host)")
	fs.DurationVar(&o.delay, "debug-commit-delay", 0, "add this delay before each commit (benchmark self-test only)")
	o.turn = turnFlags(fs)
	o.mesh = meshFlags(fs)
	if err := envflag.Parse(fs, args, out, usageHead); err != nil {
		return nil, err
	}
	if err := o.mesh.validate(); err != nil {
		return nil, err
	}
	if o.keyring == "" && o.controlURL == "" {
		return nil, errors.New("--keyring is required unless --control-url is set (create one with 'stapes keygen --out DIR')")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if o.plain && o.tlsCert != "" {
		return nil, errors.New("--plain and --tls-cert exclude each other")
	}
	if (o.controlURL == "") != (o.credFile == "") {
		return nil, errors.New("--control-url and --node-credential-file go together")
	}
	if o.relayID == "" {
		o.relayID, _ = os.Hostname()
	}
	if *origins != "" {
		o.origins = strings.Split(*origins, ",")
	}
	return o, nil
}
