package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/turn"
)

// turnOptions are relayd's TURN flags (issue 7). TURN is off unless
// --turn-listen is set.
type turnOptions struct {
	listen, tlsListen   string
	publicIP, relayIP   string
	secretFile, realm   string
	allow, relayPorts   string
	sockets, buffer     int
	maxAllocs           int
	perSession, perUser int
	bandwidth           int64
	unauthRate, perIP   float64
}

// turnFlags registers the --turn-* flags on fs.
func turnFlags(fs *flag.FlagSet) *turnOptions {
	t := &turnOptions{}
	fs.StringVar(&t.listen, "turn-listen", "", "TURN UDP+TCP address, e.g. :3478 (empty: no TURN)")
	fs.StringVar(&t.tlsListen, "turn-tls-listen", "", "TURN over TLS address, e.g. :5349 (certificate from --tls-cert)")
	fs.StringVar(&t.publicIP, "turn-public-ip", "", "public IP of this relay behind a 1:1 NAT, told to TURN clients (default: --turn-relay-ip)")
	fs.StringVar(&t.relayIP, "turn-relay-ip", "", "IP relayed sockets bind to (default: the --turn-listen host; required if that is a wildcard)")
	fs.StringVar(&t.secretFile, "turn-secret-file", "", "TURN REST shared secrets, one per line, newest first (required with --turn-listen)")
	fs.StringVar(&t.realm, "turn-realm", turn.DefaultRealm, "TURN realm")
	fs.StringVar(&t.allow, "turn-allow-peers", "", "comma-separated prefixes allowed as peers despite their class (labs only, e.g. 10.0.0.0/8)")
	fs.StringVar(&t.relayPorts, "turn-relay-ports", "", "relayed port range min-max (default: the kernel's ephemeral range)")
	fs.IntVar(&t.sockets, "turn-udp-sockets", 0, "SO_REUSEPORT UDP sockets on the TURN port (default: one per core)")
	fs.IntVar(&t.buffer, "turn-socket-buffer", 4<<20, "UDP socket buffer bytes (SO_RCVBUF/SO_SNDBUF)")
	fs.IntVar(&t.maxAllocs, "turn-max-allocations", turn.DefaultMaxAllocations, "most live TURN allocations")
	fs.IntVar(&t.perSession, "turn-allocations-per-session", turn.DefaultMaxAllocationsPerSession, "most live allocations per fitting session")
	fs.IntVar(&t.perUser, "turn-allocations-per-user", turn.DefaultMaxAllocationsPerUser, "most live allocations per TURN credential")
	fs.Int64Var(&t.bandwidth, "turn-bandwidth", turn.DefaultBandwidth, "bandwidth cap per allocation and direction, bytes/s (negative: none)")
	fs.Float64Var(&t.unauthRate, "turn-unauth-rate", turn.DefaultUnauthRate, "unauthenticated TURN requests per second, whole relay")
	fs.Float64Var(&t.perIP, "turn-unauth-rate-per-ip", turn.DefaultUnauthRatePerIP, "unauthenticated TURN requests per second per source address")
	return t
}

// turnHandle holds relayd's TURN server, if any. It exists before the
// server does, so relay.Config.OnSessionEnded can name EndSession.
type turnHandle struct {
	srv   atomic.Pointer[turn.Server]
	usage *usageRecorder // TURN usage into the outbox (set by start)
	// The bound listener addresses (set by start, read after it).
	udp, tls string
	public   string // --turn-public-ip
}

// EndSession ends the session's TURN allocations and refuses its
// credentials (relay.Config.OnSessionEnded).
func (h *turnHandle) EndSession(id string) {
	if s := h.srv.Load(); s != nil {
		s.EndSession(id)
	}
}

// start starts TURN when --turn-listen is set; its usage goes into out
// (the store's sync outbox) under the tenant tenants names.
func (h *turnHandle) start(t *turnOptions, tlsConf *tls.Config, relayID, region string, reg prometheus.Registerer, log *slog.Logger,
	out eventAppender, tenants tenantSource) error {
	if t.listen == "" {
		_, _, err := startTURN(t, tlsConf, nil, nil, reg, log)
		return err
	}
	labels := prometheus.Labels{"relay": relayID, "region": region}
	rec, err := newUsageRecorder(out, tenants, relayID, reg, labels, log)
	if err != nil {
		return err
	}
	s, _, err := startTURN(t, tlsConf, labels, rec.OnUsage, reg, log)
	if err != nil {
		return err
	}
	rec.start(s)
	h.usage = rec
	if s != nil {
		h.srv.Store(s)
		h.udp, _, h.tls = s.Addrs()
		h.public = t.publicIP
	}
	return err
}

// published returns the TURN addresses relayd publishes to controld
// ("turn": UDP and TCP, "turns": TLS, each host:port), host being
// --turn-public-ip or else advHost, the host clients reach relayd by.
// Empty when TURN is off.
func (h *turnHandle) published(advHost string) map[string]string {
	out := map[string]string{}
	if h.srv.Load() == nil {
		return out
	}
	host := advHost
	if h.public != "" {
		host = h.public
	}
	for k, a := range map[string]string{"turn": h.udp, "turns": h.tls} {
		if _, port, err := net.SplitHostPort(a); err == nil && a != "" {
			out[k] = net.JoinHostPort(host, port)
		}
	}
	return out
}

// Close closes the TURN server, if any, and records the usage of the
// allocations it closed.
func (h *turnHandle) Close() {
	if s := h.srv.Load(); s != nil {
		s.Close()
	}
	if h.usage != nil {
		h.usage.close()
	}
}

// drain refuses new allocations and waits, until ctx ends, for the live
// ones to finish (relayd's drain on SIGTERM); the channel is closed when
// it is done. Without TURN it is closed at once.
func (h *turnHandle) drain(ctx context.Context, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	s := h.srv.Load()
	if s == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		n := s.Allocations()
		if err := s.Drain(ctx); err != nil {
			log.Warn("turn drain ended with allocations left", "at_start", n, "left", s.Allocations())
			return
		}
		log.Info("turn drained", "allocations_at_start", n)
	}()
	return done
}

// startTURN starts the TURN server when --turn-listen is set. The returned
// server is nil when TURN is off; stop closes it (and is always safe).
func startTURN(t *turnOptions, tlsConf *tls.Config, labels prometheus.Labels, onUsage func(turn.Usage), reg prometheus.Registerer, log *slog.Logger) (srv *turn.Server, stop func(), err error) {
	stop = func() {}
	if t.listen == "" {
		if t.tlsListen != "" {
			return nil, stop, errors.New("--turn-tls-listen needs --turn-listen")
		}
		return nil, stop, nil
	}
	secrets, err := readSecrets(t.secretFile)
	if err != nil {
		return nil, stop, err
	}
	cfg := turn.Config{
		Credentials:              &turn.Credentials{Secrets: secrets},
		Realm:                    t.realm,
		MaxAllocations:           t.maxAllocs,
		MaxAllocationsPerSession: t.perSession,
		MaxAllocationsPerUser:    t.perUser,
		Bandwidth:                t.bandwidth,
		UnauthRate:               t.unauthRate,
		UnauthRatePerIP:          t.perIP,
		Logger:                   log,
		Registerer:               reg,
		Labels:                   labels,
		OnUsage:                  onUsage,
	}
	if cfg.PublicIP, err = optIP(t.publicIP, "--turn-public-ip"); err != nil {
		return nil, stop, err
	}
	if cfg.RelayIP, err = optIP(t.relayIP, "--turn-relay-ip"); err != nil {
		return nil, stop, err
	}
	if t.allow != "" {
		for _, p := range strings.Split(t.allow, ",") {
			pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
			if err != nil {
				return nil, stop, fmt.Errorf("--turn-allow-peers: %w", err)
			}
			cfg.Policy.Allow = append(cfg.Policy.Allow, pfx)
		}
	}
	if t.relayPorts != "" {
		lo, hi, ok := strings.Cut(t.relayPorts, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return nil, stop, fmt.Errorf("--turn-relay-ports %q: want min-max", t.relayPorts)
		}
		cfg.RelayPortMin, cfg.RelayPortMax = uint16(a), uint16(b)
	}
	var closers []func() error
	fail := func(err error) (*turn.Server, func(), error) {
		for _, c := range closers {
			c()
		}
		return nil, stop, err
	}
	n := t.sockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	cfg.PacketConns, err = turn.ListenUDP(context.Background(), "udp", t.listen, n, t.buffer)
	if err != nil {
		return fail(fmt.Errorf("--turn-listen %s: %w", t.listen, err))
	}
	for _, pc := range cfg.PacketConns {
		closers = append(closers, pc.Close)
	}
	tl, err := net.Listen("tcp", cfg.PacketConns[0].LocalAddr().String()) // same port, also when it was :0
	if err != nil {
		return fail(fmt.Errorf("--turn-listen %s (TCP): %w", t.listen, err))
	}
	closers = append(closers, tl.Close)
	cfg.TCPListeners = []net.Listener{tl}
	if t.tlsListen != "" {
		if tlsConf == nil {
			return fail(errors.New("--turn-tls-listen needs TLS (not --plain)"))
		}
		sl, err := net.Listen("tcp", t.tlsListen)
		if err != nil {
			return fail(fmt.Errorf("--turn-tls-listen %s: %w", t.tlsListen, err))
		}
		closers = append(closers, sl.Close)
		cfg.TLSListeners = []net.Listener{sl}
		cfg.TLS = tlsConf.Clone()
		cfg.TLS.NextProtos = nil // TURN clients offer no ALPN or their own
	}
	if srv, err = turn.New(cfg); err != nil {
		return fail(fmt.Errorf("turn: %w", err))
	}
	log.Info("turn ready", "listen", cfg.PacketConns[0].LocalAddr().String(), "tls", t.tlsListen, "udp_sockets", n)
	return srv, func() { srv.Close() }, nil
}

func optIP(s, flagName string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%s: %w", flagName, err)
	}
	return a, nil
}

// readSecrets reads --turn-secret-file (turn.LoadSecrets: one secret per
// line, newest first).
func readSecrets(path string) ([][]byte, error) {
	if path == "" {
		return nil, errors.New("--turn-secret-file is required with --turn-listen")
	}
	out, err := turn.LoadSecrets(path)
	if err != nil {
		return nil, fmt.Errorf("--turn-secret-file: %w", err)
	}
	return out, nil
}
