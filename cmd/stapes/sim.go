package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/token"
)

func init() {
	register(verb{
		name:    "sim",
		summary: "simulate a patient (phone app + hearing aid) or a clinician sending config changes",
		usage:   "patient|clinician (--url URL[,URL] | --relay-map URL) (--token-file F | --key F --session SID ...) [flags]",
		flags: func(fs *flag.FlagSet) runFunc {
			s := &simCmd{fs: fs}
			s.conn.define(fs)
			s.probe.define(fs)
			s.call.define(fs)
			fs.DurationVar(&s.patient.bleDelay, "ble-delay", 40*time.Millisecond, "patient: simulated BLE write time per config command (read-back takes a quarter of it)")
			fs.Float64Var(&s.patient.rejectRate, "reject-rate", 0, "patient: share of commands the hearing aid refuses (0..1)")
			fs.Uint64Var(&s.patient.version, "aid-version", 0, "patient: config version the simulated hearing aid starts at")
			fs.DurationVar(&s.patient.telemetry, "telemetry-every", 0, "patient: send a telemetry sample this often (0 = never)")
			fs.IntVar(&s.clin.commands, "commands", 10, "clinician: config commands to send (0 = until interrupted; with --call: none, the call only)")
			fs.DurationVar(&s.clin.interval, "interval", 500*time.Millisecond, "clinician: pause between commands")
			fs.StringVar(&s.clin.param, "param", "gain.l.2k", "clinician: parameter to change")
			fs.Int64Var(&s.clin.step, "step", 20, "clinician: change per command, in 0.1 dB")
			return s.run
		},
	})
}

// connFlags are the connection flags shared by sim verbs.
type connFlags struct {
	urls     string
	tokFile  string
	key      string
	tenant   string
	subject  string
	session  string
	device   string
	model    string
	cert     string
	insecure bool
	fromMap  bool // the URLs come from --relay-map (sim_probe.go)
}

func (c *connFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&c.urls, "url", "", "relay `URLs`, comma-separated: wss://host:port/v1/connect or quic://host:port (required)")
	fs.StringVar(&c.tokFile, "token-file", "", "file holding the session token (from 'stapes token')")
	fs.StringVar(&c.key, "key", "", "dev only: signing key `FILE` to mint the token locally instead of --token-file")
	fs.StringVar(&c.tenant, "tenant", "demo-clinic", "with --key: tenant id")
	fs.StringVar(&c.subject, "subject", "", "with --key: subject id (default: the role)")
	fs.StringVar(&c.session, "session", "", "with --key: fitting session id")
	fs.StringVar(&c.device, "device", "HA-0001", "with --key: hearing-aid serial")
	fs.StringVar(&c.model, "model", "demo-ric", "with --key: hearing-aid model")
	fs.StringVar(&c.cert, "cert", "", "PEM certificate to trust (e.g. relayd's self-signed relay-cert.pem)")
	fs.BoolVar(&c.insecure, "insecure", false, "skip TLS verification (local experiments only)")
}

// tlsOnly builds a client config with the URLs and TLS settings only.
func (c *connFlags) tlsOnly() (client.Config, error) {
	if c.urls == "" && !c.fromMap {
		return client.Config{}, usagef("--url is required")
	}
	var cfg client.Config
	if c.urls != "" {
		cfg.URLs = strings.Split(c.urls, ",")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: c.insecure}
	if c.cert != "" {
		pemBytes, err := os.ReadFile(c.cert)
		if err != nil {
			return cfg, fmt.Errorf("reading --cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return cfg, fmt.Errorf("--cert %s holds no PEM certificate", c.cert)
		}
		tc.RootCAs = pool
	}
	cfg.TLS = tc
	return cfg, nil
}

// clientConfig builds a client config for role.
func (c *connFlags) clientConfig(role string) (client.Config, error) {
	cfg, err := c.tlsOnly()
	if err != nil {
		return cfg, err
	}
	switch {
	case c.tokFile != "" && c.key != "":
		return cfg, usagef("give --token-file or --key, not both")
	case c.tokFile != "":
		b, err := os.ReadFile(c.tokFile)
		if err != nil {
			return cfg, fmt.Errorf("reading --token-file: %w", err)
		}
		tok := []byte(strings.TrimSpace(string(b)))
		cfg.Token = func(context.Context) ([]byte, error) { return tok, nil }
	case c.key != "":
		if c.session == "" {
			return cfg, usagef("--session is required with --key")
		}
		signer, err := token.LoadSigner(c.key)
		if err != nil {
			return cfg, err
		}
		subject := c.subject
		if subject == "" {
			subject = role
		}
		claims := token.Claims{Tenant: c.tenant, Subject: subject, Role: role, Session: c.session, Device: c.device, Model: c.model}
		cfg.Token = func(context.Context) ([]byte, error) {
			now := time.Now()
			claims.IssuedAt, claims.Expiry, claims.ID = now.Unix(), now.Add(time.Hour).Unix(), rand.Text()
			return signer.Sign(claims)
		}
	default:
		return cfg, usagef("give --token-file or (dev) --key with --session")
	}
	return cfg, nil
}

type simCmd struct {
	fs      *flag.FlagSet // to parse flags after the side, as in "sim patient --url …"
	conn    connFlags
	probe   probeFlags
	patient patientSim
	clin    clinicianSim
	call    callFlags
}

func (s *simCmd) run(ctx context.Context, e *env) error {
	if len(e.args) > 1 {
		if err := s.fs.Parse(e.args[1:]); err != nil {
			return usagef("%v", err)
		}
		e.args = append(e.args[:1], s.fs.Args()...)
	}
	if len(e.args) != 1 || (e.args[0] != "patient" && e.args[0] != "clinician") {
		return usagef("say which side to simulate: stapes sim patient|clinician [flags]")
	}
	role := e.args[0]
	if s.conn.urls != "" && s.probe.relayMap != "" {
		return usagef("give --url or --relay-map, not both")
	}
	if s.probe.report && (role != "patient" || s.probe.relayMap == "") {
		return usagef("--report-rtts is for the patient sim with --relay-map")
	}
	if err := s.call.check(); err != nil {
		return err
	}
	s.patient.call, s.clin.call = &s.call, &s.call
	s.conn.fromMap = s.probe.relayMap != ""
	cfg, err := s.conn.clientConfig(role)
	if err != nil {
		return err
	}
	out := &lineWriter{w: e.stdout, prefix: ""}
	ms, err := s.probe.choose(ctx, &cfg, out)
	if err != nil {
		return err
	}
	if s.probe.report {
		if err := s.probe.reportRTTs(ctx, cfg, ms, out); err != nil {
			out.printf("warning: %v", err)
		}
	}
	if role == "patient" {
		if s.patient.rejectRate < 0 || s.patient.rejectRate > 1 {
			return usagef("--reject-rate must be between 0 and 1")
		}
		return s.patient.run(ctx, cfg, out)
	}
	if s.clin.commands < 0 || s.clin.step <= 0 {
		return usagef("--commands must be >= 0 and --step > 0")
	}
	return s.clin.run(ctx, cfg, out)
}

// lineWriter prints whole lines with a prefix; safe for concurrent use,
// also by several lineWriters on one writer (they share outMu).
type lineWriter struct {
	w      io.Writer
	prefix string
}

var outMu sync.Mutex // serialises every lineWriter's output

func (l *lineWriter) printf(format string, args ...any) {
	line := fmt.Sprintf("%s%s %s\n", l.prefix, time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	outMu.Lock()
	defer outMu.Unlock()
	io.WriteString(l.w, line)
}

// events prints connection events until the client stops.
func printEvents(c *client.Client, out *lineWriter) {
	for ev := range c.Events() {
		switch ev.Type {
		case client.EventConnected, client.EventResumed:
			w := ev.Welcome
			out.printf("%s over %s (session %s, head seq %d, config v%d, resumed=%v)", ev.Type, ev.Transport, w.Session, w.HeadSeq, w.ConfigVersion, w.Resumed)
		case client.EventDisconnected:
			out.printf("disconnected from %s: %v; reconnecting", ev.Transport, ev.Err)
		case client.EventGoaway:
			out.printf("relay says goaway (redirect %q)", ev.Redirect)
		case client.EventFailed:
			out.printf("stopped: %v", ev.Err)
		}
	}
}
