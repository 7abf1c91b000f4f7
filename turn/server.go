package turn

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"
)

// Server is stapes' TURN server: pion/turn/v5 for the protocol, with
// stapes' credentials, peer policy, quotas, bandwidth caps, metrics, usage
// accounting, drain and a Close that waits. See README.md for how the
// pieces attach to pion.
type Server struct {
	cfg             Config
	log             *slog.Logger
	creds           Credentials
	policy          *PeerPolicy
	counterpartOnly bool
	self            []netip.Addr // the relay's own addresses
	m               *metrics
	unauth          *ipLimiter
	pion            *pturn.Server
	socks           []*udpSock

	relayPorts                      *[65536]atomic.Pointer[allocation] // live relayed ports on RelayIP/PublicIP
	nextPort                        atomic.Uint32
	draining                        atomic.Bool
	permissions, channels, tcpConns atomic.Int64

	// loops counts pion's goroutines as seen through our wrappers: each
	// UDP listener's reader, each TCP listener's accept loop, each client
	// connection, each relayed socket's reader. Close waits for it.
	loops sync.WaitGroup
	wg    sync.WaitGroup // the Server's own goroutines
	stop  chan struct{}

	kmu   sync.Mutex                     // guards the two fields below
	keyIx map[string]int                 // username+realm → index of the secret that verified it
	slots map[clientKey][]netip.AddrPort // a client's latest permission request's peer addresses

	mu           sync.Mutex // guards the fields below
	closing      bool
	live         int
	nextID       uint64
	sessions     map[string]*sessionState
	users        map[string]int
	byRelay      map[netip.AddrPort]*allocation
	byClient     map[clientKey]*allocation
	ended        map[string]time.Time
	conns        map[*tcpConn]struct{}
	pending      []Usage
	closedTotals totals

	closeOnce sync.Once
}

// New validates cfg, starts pion on its listeners and returns the Server.
// On error the caller still owns the listeners.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, creds: *cfg.Credentials,
		counterpartOnly: cfg.Policy.CounterpartOnly,
		relayPorts:      new([65536]atomic.Pointer[allocation]),
		unauth:          newIPLimiter(cfg.UnauthRate, cfg.UnauthRatePerIP),
		stop:            make(chan struct{}),
		keyIx:           map[string]int{}, slots: map[clientKey][]netip.AddrPort{},
		sessions: map[string]*sessionState{}, users: map[string]int{},
		byRelay: map[netip.AddrPort]*allocation{}, byClient: map[clientKey]*allocation{},
		ended: map[string]time.Time{}, conns: map[*tcpConn]struct{}{},
	}
	ended := s.creds.Ended
	s.creds.Ended = func(id string) bool { return s.isEnded(id) || (ended != nil && ended(id)) }
	s.self = selfAddrs(cfg)
	pc := cfg.Policy
	pc.RelayAddrs = append(slices.Clone(pc.RelayAddrs), s.self...)
	if s.policy, err = NewPeerPolicy(pc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if s.m, err = newMetrics(s, cfg.Registerer, cfg.Labels); err != nil {
		return nil, err
	}
	gen := generator{s}
	pcfg := pturn.ServerConfig{
		Realm:              cfg.Realm,
		AuthHandler:        s.authHandler,
		QuotaHandler:       s.quotaHandler,
		EventHandler:       s.events(),
		AllocationLifetime: cfg.AllocationLifetime,
		PermissionTimeout:  cfg.PermissionLifetime,
		ChannelBindTimeout: cfg.ChannelLifetime,
		InboundMTU:         MaxPacket,
		LoggerFactory:      nopLoggers{},
	}
	for _, c := range cfg.PacketConns {
		u := newUDPSock(s, c.(*net.UDPConn))
		s.socks = append(s.socks, u)
		pcfg.PacketConnConfigs = append(pcfg.PacketConnConfigs, pturn.PacketConnConfig{
			PacketConn: u, RelayAddressGenerator: gen, PermissionHandler: s.permit,
		})
	}
	var lns []*tcpListener
	for i, l := range append(slices.Clone(cfg.TCPListeners), cfg.TLSListeners...) {
		tl := &tcpListener{s: s, ln: l}
		if i >= len(cfg.TCPListeners) {
			tl.tls = cfg.TLS
		}
		lns = append(lns, tl)
		pcfg.ListenerConfigs = append(pcfg.ListenerConfigs, pturn.ListenerConfig{
			Listener: tl, RelayAddressGenerator: gen, PermissionHandler: s.permit,
		})
	}
	s.loops.Add(len(s.socks) + len(lns))
	if s.pion, err = pturn.NewServer(pcfg); err != nil {
		s.loops.Add(-len(s.socks) - len(lns))
		s.m.unregister(cfg.Registerer)
		return nil, fmt.Errorf("%w: pion: %w", ErrBadConfig, err)
	}
	s.wg.Add(1)
	go s.housekeeping()
	s.log.Info("turn server started", "udp_sockets", len(s.socks), "tcp_listeners", len(cfg.TCPListeners),
		"tls_listeners", len(cfg.TLSListeners), "relay_ip", cfg.RelayIP.String(), "public_ip", cfg.PublicIP.String())
	return s, nil
}

// selfAddrs lists the relay's own addresses: listeners, relay and public
// IP, and every interface address when something listens on a wildcard.
func selfAddrs(cfg Config) []netip.Addr {
	var out []netip.Addr
	wild := false
	add := func(a net.Addr) {
		if ap, ok := netAddrPort(a); ok {
			if ap.Addr().IsUnspecified() {
				wild = true
			} else {
				out = append(out, ap.Addr())
			}
		}
	}
	for _, c := range cfg.PacketConns {
		add(c.LocalAddr())
	}
	for _, l := range append(slices.Clone(cfg.TCPListeners), cfg.TLSListeners...) {
		add(l.Addr())
	}
	for _, a := range []netip.Addr{cfg.RelayIP, cfg.PublicIP} {
		if a.IsUnspecified() {
			wild = true
		} else {
			out = append(out, a)
		}
	}
	if wild {
		if ifs, err := net.InterfaceAddrs(); err == nil {
			for _, ia := range ifs {
				if p, err := netip.ParsePrefix(ia.String()); err == nil {
					out = append(out, p.Addr().Unmap())
				}
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// isSelf reports whether ip (unmapped) is one of the relay's addresses.
func (s *Server) isSelf(ip netip.Addr) bool {
	for _, a := range s.self {
		if a == ip {
			return true
		}
	}
	return false
}

// liveRelay returns the live allocation relayed at ap on this Server.
func (s *Server) liveRelay(ap netip.AddrPort) *allocation {
	if a := ap.Addr(); a != s.cfg.PublicIP && a != s.cfg.RelayIP {
		return nil
	}
	return s.relayPorts[ap.Port()].Load()
}

// EndSession refuses the session's credentials from now on and tears down
// its allocations on this relay. It returns how many it closed.
func (s *Server) EndSession(session string) int {
	s.mu.Lock()
	s.ended[session] = time.Now()
	var rs []*relayConn
	var short string
	if ss := s.sessions[session]; ss != nil {
		short = ss.short
		for a := range ss.allocs {
			rs = append(rs, a.relay)
		}
	}
	s.mu.Unlock()
	for _, r := range rs {
		r.Close()
	}
	if len(rs) > 0 {
		s.log.Info("turn session ended", "session", short, "allocations", len(rs))
	}
	return len(rs)
}

func (s *Server) isEnded(session string) bool {
	s.mu.Lock()
	_, ok := s.ended[session]
	s.mu.Unlock()
	return ok
}

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return int(s.allocCount()) }

// Addrs returns the bound addresses of the first UDP socket, TCP
// listener and TLS listener ("" where there is none): what a relay
// publishes for its ICE server URLs.
func (s *Server) Addrs() (udp, tcp, tls string) {
	if len(s.cfg.PacketConns) > 0 {
		udp = s.cfg.PacketConns[0].LocalAddr().String()
	}
	if len(s.cfg.TCPListeners) > 0 {
		tcp = s.cfg.TCPListeners[0].Addr().String()
	}
	if len(s.cfg.TLSListeners) > 0 {
		tls = s.cfg.TLSListeners[0].Addr().String()
	}
	return udp, tcp, tls
}

// Drain refuses new allocations (486, counted as draining) while existing
// ones go on, and waits until none is left or ctx ends.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.allocCount() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("turn drain: %d allocations left: %w", s.allocCount(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Close stops the Server: listeners, client connections and relayed
// sockets close, and Close returns once pion's loops have let go of every
// one of them and the Server's own goroutines have stopped (pion's
// goroutines then finish their last instructions, holding nothing).
// Usage records of the sessions still open go to OnUsage before it
// returns. Close is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		conns := make([]*tcpConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		var relays []*relayConn
		for _, ss := range s.sessions {
			for a := range ss.allocs {
				relays = append(relays, a.relay)
			}
		}
		s.mu.Unlock()
		err = s.pion.Close()
		for _, c := range conns {
			c.Close()
		}
		for _, r := range relays {
			r.Close()
		}
		s.loops.Wait()
		close(s.stop)
		s.wg.Wait()
		s.flushUsage()
		s.m.unregister(s.cfg.Registerer)
		s.log.Info("turn server stopped")
	})
	return err
}

// housekeeping hands usage records to OnUsage and forgets ended sessions
// whose credentials can no longer be valid.
func (s *Server) housekeeping() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.flushUsage()
			keep := s.creds.maxTTL() + 2*ExpiryLeeway
			s.mu.Lock()
			for id, at := range s.ended {
				if now.Sub(at) > keep {
					delete(s.ended, id)
				}
			}
			s.mu.Unlock()
		}
	}
}

// nopLoggers discards pion's logs: they name client and peer addresses.
type nopLoggers struct{}

func (nopLoggers) NewLogger(string) logging.LeveledLogger { return nopLogger{} }

type nopLogger struct{}

func (nopLogger) Trace(string)          {}
func (nopLogger) Tracef(string, ...any) {}
func (nopLogger) Debug(string)          {}
func (nopLogger) Debugf(string, ...any) {}
func (nopLogger) Info(string)           {}
func (nopLogger) Infof(string, ...any)  {}
func (nopLogger) Warn(string)           {}
func (nopLogger) Warnf(string, ...any)  {}
func (nopLogger) Error(string)          {}
func (nopLogger) Errorf(string, ...any) {}
