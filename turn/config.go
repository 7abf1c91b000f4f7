package turn

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config. Each field's comment names the one it uses.
const (
	DefaultRealm                    = "stapes"
	DefaultMaxAllocations           = 10000
	DefaultMaxAllocationsPerSession = 8
	DefaultMaxAllocationsPerUser    = 4
	DefaultBandwidth                = 1_500_000 // bytes/s per direction: 12 Mbit/s, a generous HD call
	DefaultUnauthRate               = 1000      // unauthenticated requests/s, whole server
	DefaultUnauthRatePerIP          = 20        // unauthenticated requests/s per source address
	DefaultMaxTCPConns              = 4096
	DefaultHandshakeTimeout         = 10 * time.Second
	DefaultTCPIdleTimeout           = 15 * time.Minute
	DefaultRelayBuffer              = 1 << 20
	DefaultAllocationLifetime       = 10 * time.Minute
	DefaultPermissionLifetime       = 5 * time.Minute
	DefaultChannelLifetime          = 10 * time.Minute
	// MaxPacket is the largest datagram a UDP listener reads (a ChannelData
	// header plus a full-size media packet with room to spare); longer ones
	// are dropped as truncated.
	MaxPacket = 2048
)

// Config configures a Server. Listeners are opened by the caller (ListenUDP,
// net.Listen) so tests pass 127.0.0.1:0; everything else has a default
// named in its comment, applied by New.
type Config struct {
	// PacketConns are the UDP listeners, usually the SO_REUSEPORT group
	// ListenUDP returns (one socket per core, one port). Each must be a
	// *net.UDPConn. The Server owns them: Close closes them.
	PacketConns []net.PacketConn
	// TCPListeners serve TURN over TCP (RFC 6062 control connections).
	TCPListeners []net.Listener
	// TLSListeners are TCP listeners the Server wraps in TLS with TLS.
	TLSListeners []net.Listener
	// TLS is required with TLSListeners (certificate from config).
	TLS *tls.Config

	// RelayIP is the address relayed sockets bind to. Default: the IP of
	// the first listener when it is a specific address; required otherwise.
	RelayIP netip.Addr
	// PublicIP is the address clients are told (XOR-RELAYED-ADDRESS) when
	// the relay sits behind a 1:1 NAT. Default: RelayIP. Required when
	// RelayIP is unspecified (0.0.0.0).
	PublicIP netip.Addr
	// RelayPortMin and RelayPortMax bound the relayed ports. Default: 0, 0
	// (the kernel's ephemeral range).
	RelayPortMin, RelayPortMax uint16
	// RelayBuffer is SO_RCVBUF/SO_SNDBUF of relayed sockets, in bytes.
	// Default: DefaultRelayBuffer. Negative: leave the kernel's default.
	RelayBuffer int

	// Realm of the long-term credentials. Default: DefaultRealm.
	Realm string
	// Credentials verify REST credentials (required). The Server copies it
	// and adds its own ended-session check (EndSession) to Ended; a nil
	// Ended is then allowed.
	Credentials *Credentials

	// Policy is the peer policy. The Server adds its own addresses
	// (listeners, RelayIP, PublicIP) to RelayAddrs. Relayed addresses of
	// this Server's live allocations are the one exception to relay_self,
	// so two relay-only participants of a call can meet on one relay.
	Policy PeerPolicyConfig
	// Counterparts, under Policy.CounterpartOnly, returns the relayed
	// candidates of a session's other participants on other relays (the
	// ones on this relay are known). Called on permission requests; must be
	// fast and safe for concurrent use. Default: none.
	Counterparts func(session string) []netip.Addr

	// MaxAllocations is the most live allocations. Default:
	// DefaultMaxAllocations.
	MaxAllocations int
	// MaxAllocationsPerSession bounds the live allocations of one fitting
	// session. Default: DefaultMaxAllocationsPerSession.
	MaxAllocationsPerSession int
	// MaxAllocationsPerUser bounds the live allocations of one credential
	// (username). Default: DefaultMaxAllocationsPerUser.
	MaxAllocationsPerUser int
	// Bandwidth caps each allocation, per direction, in bytes/s; packets
	// over it are dropped. Default: DefaultBandwidth. Negative: no cap.
	Bandwidth int64
	// BandwidthBurst is the bucket depth in bytes. Default: Bandwidth/4,
	// at least 64 KiB.
	BandwidthBurst int64
	// UnauthRate bounds unauthenticated requests (no MESSAGE-INTEGRITY, or
	// failed authentication) per second for the whole server; burst twice
	// that. Over it, requests are dropped. Default: DefaultUnauthRate.
	UnauthRate float64
	// UnauthRatePerIP is the same per source address. Default:
	// DefaultUnauthRatePerIP.
	UnauthRatePerIP float64
	// MaxTCPConns is the most open TCP and TLS connections. Default:
	// DefaultMaxTCPConns.
	MaxTCPConns int
	// HandshakeTimeout bounds a new TCP/TLS connection's first message
	// (and TLS handshake). Default: DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// TCPIdleTimeout closes TCP/TLS connections silent this long. Default:
	// DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration
	// AllocationLifetime, PermissionLifetime and ChannelLifetime are the
	// RFC 8656 lifetimes. Defaults: 10 min, 5 min, 10 min.
	AllocationLifetime, PermissionLifetime, ChannelLifetime time.Duration

	// OnUsage receives a session's TURN usage when its last allocation on
	// this relay closes (and on Close for those still open): the record
	// relayd puts into the sync outbox. Called from one Server goroutine,
	// never concurrently; it must not block for long. Default: none.
	OnUsage func(Usage)

	// Logger receives the Server's logs (no PHI: allocation and session
	// short ids only). Default: slog.Default(). pion's own logs, which
	// name client addresses, are discarded.
	Logger *slog.Logger
	// Registerer receives the metrics. Default: none (not exported).
	Registerer prometheus.Registerer
	// Labels are constant labels on every metric (relay, region). Never a
	// user or session.
	Labels prometheus.Labels
}

// LocalConfig returns a Config for local development and tests: small
// limits, short timeouts, the loopback lab allowed as peers.
func LocalConfig(creds *Credentials) Config {
	return Config{
		Credentials:      creds,
		Policy:           PeerPolicyConfig{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		MaxAllocations:   256,
		MaxTCPConns:      256,
		HandshakeTimeout: 5 * time.Second,
	}
}

// withDefaults returns cfg with defaults applied and checks it.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(f string, a ...any) (Config, error) {
		return cfg, fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(f, a...))
	}
	if len(cfg.PacketConns)+len(cfg.TCPListeners)+len(cfg.TLSListeners) == 0 {
		return bad("no listener")
	}
	for i, pc := range cfg.PacketConns {
		if _, ok := pc.(*net.UDPConn); !ok {
			return bad("packet conn %d is %T, want *net.UDPConn", i, pc)
		}
	}
	if len(cfg.TLSListeners) > 0 && cfg.TLS == nil {
		return bad("TLS listeners without a TLS config")
	}
	if cfg.Credentials == nil {
		return bad("no credentials")
	}
	if err := cfg.Credentials.checkSecrets(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if !cfg.RelayIP.IsValid() {
		cfg.RelayIP = firstListenIP(cfg)
	}
	if !cfg.RelayIP.IsValid() {
		return bad("RelayIP required when listening on a wildcard address")
	}
	cfg.RelayIP = cfg.RelayIP.Unmap()
	if !cfg.PublicIP.IsValid() {
		if cfg.RelayIP.IsUnspecified() {
			return bad("PublicIP required when RelayIP is unspecified")
		}
		cfg.PublicIP = cfg.RelayIP
	}
	cfg.PublicIP = cfg.PublicIP.Unmap()
	if cfg.PublicIP.IsUnspecified() {
		return bad("PublicIP %v is unspecified", cfg.PublicIP)
	}
	if cfg.RelayPortMin > cfg.RelayPortMax || (cfg.RelayPortMin == 0) != (cfg.RelayPortMax == 0) {
		return bad("relay port range %d-%d", cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.RelayBuffer == 0 {
		cfg.RelayBuffer = DefaultRelayBuffer
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	def := func(v *int, d int, name string) error {
		if *v == 0 {
			*v = d
		}
		if *v < 0 {
			return fmt.Errorf("%w: %s %d", ErrBadConfig, name, *v)
		}
		return nil
	}
	for _, f := range []struct {
		v    *int
		d    int
		name string
	}{
		{&cfg.MaxAllocations, DefaultMaxAllocations, "MaxAllocations"},
		{&cfg.MaxAllocationsPerSession, DefaultMaxAllocationsPerSession, "MaxAllocationsPerSession"},
		{&cfg.MaxAllocationsPerUser, DefaultMaxAllocationsPerUser, "MaxAllocationsPerUser"},
		{&cfg.MaxTCPConns, DefaultMaxTCPConns, "MaxTCPConns"},
	} {
		if err := def(f.v, f.d, f.name); err != nil {
			return cfg, err
		}
	}
	if cfg.Bandwidth == 0 {
		cfg.Bandwidth = DefaultBandwidth
	}
	if cfg.BandwidthBurst <= 0 {
		cfg.BandwidthBurst = max(cfg.Bandwidth/4, 64<<10)
	}
	if cfg.UnauthRate == 0 {
		cfg.UnauthRate = DefaultUnauthRate
	}
	if cfg.UnauthRatePerIP == 0 {
		cfg.UnauthRatePerIP = DefaultUnauthRatePerIP
	}
	if cfg.UnauthRate < 0 || cfg.UnauthRatePerIP < 0 {
		return bad("negative unauthenticated rate")
	}
	durs := []struct {
		v *time.Duration
		d time.Duration
	}{
		{&cfg.HandshakeTimeout, DefaultHandshakeTimeout},
		{&cfg.TCPIdleTimeout, DefaultTCPIdleTimeout},
		{&cfg.AllocationLifetime, DefaultAllocationLifetime},
		{&cfg.PermissionLifetime, DefaultPermissionLifetime},
		{&cfg.ChannelLifetime, DefaultChannelLifetime},
	}
	for _, d := range durs {
		if *d.v == 0 {
			*d.v = d.d
		}
		if *d.v < 0 {
			return bad("negative timeout %v", *d.v)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// firstListenIP is the IP of the first listener, if it is specific.
func firstListenIP(cfg Config) netip.Addr {
	var a net.Addr
	switch {
	case len(cfg.PacketConns) > 0:
		a = cfg.PacketConns[0].LocalAddr()
	case len(cfg.TCPListeners) > 0:
		a = cfg.TCPListeners[0].Addr()
	case len(cfg.TLSListeners) > 0:
		a = cfg.TLSListeners[0].Addr()
	}
	ap, ok := netAddrPort(a)
	if !ok || ap.Addr().IsUnspecified() {
		return netip.Addr{}
	}
	return ap.Addr()
}

// netAddrPort converts a *net.UDPAddr or *net.TCPAddr, unmapped.
func netAddrPort(a net.Addr) (netip.AddrPort, bool) {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		return ap, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}
