package gossip

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Profile picks the memberlist timing a [Config] starts from.
type Profile int

// Profiles.
const (
	ProfileLAN   Profile = iota // memberlist.DefaultLANConfig: one data centre
	ProfileLocal                // memberlist.DefaultLocalConfig, tightened for tests on loopback
	ProfileWAN                  // memberlist.DefaultWANConfig: members across regions
)

func (p Profile) String() string {
	switch p {
	case ProfileLAN:
		return "lan"
	case ProfileLocal:
		return "local"
	case ProfileWAN:
		return "wan"
	}
	return fmt.Sprintf("profile(%d)", int(p))
}

// Config configures a [Cluster]. Zero timing fields take the Profile's value.
type Config struct {
	// Meta is this node's metadata. Meta.ID is its name in the cluster:
	// required, unique in the deployment. Its encoding must fit MaxMetaSize.
	Meta Meta

	// Cluster names the deployment. It is sent in clear before every
	// message; nodes with another name refuse ours. Default "" (none).
	// At most 255 bytes.
	Cluster string

	// BindAddr is the IP gossip listens on, UDP and TCP. Default "0.0.0.0".
	BindAddr string
	// BindPort is the port for UDP and TCP. Default 0: the kernel picks one
	// free for both; Addr reports it.
	BindPort int
	// AdvertiseAddr is the IP other members reach us on. Default: BindAddr
	// unless unspecified, else the first private IP of this host.
	AdvertiseAddr string
	// AdvertisePort is the port other members reach us on. Default: the
	// bound port.
	AdvertisePort int

	// Keys encrypt gossip (AES-GCM, 16, 24 or 32 bytes each). Keys[0] is
	// the primary, used to send; all are tried on receipt, so a rotation
	// adds the new key everywhere, makes it primary, then drops the old.
	// Required unless Plaintext.
	Keys [][]byte
	// Plaintext allows gossip without Keys (tests, local development).
	// Default false.
	Plaintext bool

	// Profile picks the base timing. Default ProfileLAN.
	Profile Profile
	// ProbeInterval is how often a member probes a random other.
	// Default: Local 200ms, LAN 1s, WAN 5s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack before indirect
	// probes. Default: Local 100ms, LAN 500ms, WAN 3s.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect has to refute before it is
	// declared dead: SuspicionMult × max(1, log10 N) × ProbeInterval at
	// least, SuspicionMaxTimeoutMult times that at most.
	// Default: Local 3, LAN 4, WAN 6.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout (see
	// SuspicionMult). Default 6.
	SuspicionMaxTimeoutMult int
	// GossipInterval is how often a member gossips to GossipNodes others.
	// Default: Local 50ms, LAN 200ms, WAN 500ms.
	GossipInterval time.Duration
	// GossipNodes is how many members each gossip round reaches.
	// Default: Local 3, LAN 3, WAN 4.
	GossipNodes int
	// PushPullInterval is how often a member syncs full state over TCP with
	// a random other (memberlist stretches it above 32 members).
	// Default: Local 5s, LAN 30s, WAN 60s.
	PushPullInterval time.Duration
	// TCPTimeout bounds a TCP exchange (join, push/pull, fallback probe).
	// Default: Local 1s, LAN 10s, WAN 30s.
	TCPTimeout time.Duration
	// DeadNodeReclaimTime is how long after a member died another node may
	// take its ID from a different address (a relay restarted elsewhere).
	// Default: Local 2s, LAN 30s, WAN 60s.
	DeadNodeReclaimTime time.Duration

	// OnEvent receives membership events, in order, from one goroutine the
	// Cluster owns. It may call Members and UpdateMeta but not Leave or
	// Close. Default nil: events are not queued.
	OnEvent func(Event)
	// EventQueue bounds events waiting for OnEvent; more are dropped and
	// counted (reason "queue_full"). Default 1024.
	EventQueue int

	// Logger receives memberlist's log lines at their levels. Default:
	// discard.
	Logger *slog.Logger
	// Registerer, when set, receives the cluster's metrics. Default nil.
	Registerer prometheus.Registerer
}

// LocalConfig is for members on one host (tests, demos): memberlist's
// DefaultLocalConfig with probes every 200ms (timeout 100ms), gossip every
// 50ms and push/pull every 5s, so a crash is declared within a few seconds.
func LocalConfig() Config {
	return Config{Profile: ProfileLocal, BindAddr: "127.0.0.1"}
}

// LANConfig is for members in one data centre: memberlist's
// DefaultLANConfig, with dead IDs reclaimable after 30s.
func LANConfig() Config { return Config{Profile: ProfileLAN} }

// WANConfig is for members across regions: memberlist's DefaultWANConfig,
// with dead IDs reclaimable after 60s.
func WANConfig() Config { return Config{Profile: ProfileWAN} }

// memberlist builds the memberlist configuration: the profile's preset,
// our tuning, then explicit fields. The transport, delegates and logger are
// filled by New.
func (c *Config) memberlist() (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.PushPullInterval = 5 * time.Second
		mc.DeadNodeReclaimTime = 2 * time.Second
	case ProfileLAN:
		mc = memberlist.DefaultLANConfig()
		mc.DeadNodeReclaimTime = 30 * time.Second
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
		mc.DeadNodeReclaimTime = 60 * time.Second
	default:
		return nil, fmt.Errorf("%w: unknown profile %d", ErrConfig, int(c.Profile))
	}
	mc.Name = c.Meta.ID
	mc.Label = c.Cluster
	mc.BindAddr = c.BindAddr
	if mc.BindAddr == "" {
		mc.BindAddr = "0.0.0.0"
	}
	mc.BindPort = c.BindPort
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	setDur(&mc.ProbeInterval, c.ProbeInterval)
	setDur(&mc.ProbeTimeout, c.ProbeTimeout)
	setDur(&mc.GossipInterval, c.GossipInterval)
	setDur(&mc.PushPullInterval, c.PushPullInterval)
	setDur(&mc.TCPTimeout, c.TCPTimeout)
	setDur(&mc.DeadNodeReclaimTime, c.DeadNodeReclaimTime)
	setInt(&mc.SuspicionMult, c.SuspicionMult)
	setInt(&mc.SuspicionMaxTimeoutMult, c.SuspicionMaxTimeoutMult)
	setInt(&mc.GossipNodes, c.GossipNodes)
	mc.DNSConfigPath = "" // seeds are IPs or names the system resolver knows
	return mc, nil
}

func setDur(dst *time.Duration, v time.Duration) {
	if v != 0 {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v != 0 {
		*dst = v
	}
}

// validate checks c and fills defaults that are not memberlist's.
func (c *Config) validate() error {
	if c.Meta.ID == "" {
		return fmt.Errorf("%w: Meta.ID is required", ErrConfig)
	}
	if _, err := c.Meta.MarshalBinary(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if len(c.Cluster) > memberlist.LabelMaxSize {
		return fmt.Errorf("%w: Cluster longer than %d bytes", ErrConfig, memberlist.LabelMaxSize)
	}
	if c.BindAddr != "" {
		if _, err := netip.ParseAddr(c.BindAddr); err != nil {
			return fmt.Errorf("%w: BindAddr: %w", ErrConfig, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if _, err := netip.ParseAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("%w: AdvertiseAddr: %w", ErrConfig, err)
		}
	}
	for name, p := range map[string]int{"BindPort": c.BindPort, "AdvertisePort": c.AdvertisePort} {
		if p < 0 || p > math.MaxUint16 {
			return fmt.Errorf("%w: %s %d out of range", ErrConfig, name, p)
		}
	}
	if len(c.Keys) == 0 && !c.Plaintext {
		return fmt.Errorf("%w: Keys are required unless Plaintext", ErrConfig)
	}
	for i, k := range c.Keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("%w: Keys[%d] is %d bytes, want 16, 24 or 32", ErrConfig, i, n)
		}
	}
	for name, d := range map[string]time.Duration{
		"ProbeInterval": c.ProbeInterval, "ProbeTimeout": c.ProbeTimeout, "GossipInterval": c.GossipInterval,
		"PushPullInterval": c.PushPullInterval, "TCPTimeout": c.TCPTimeout, "DeadNodeReclaimTime": c.DeadNodeReclaimTime,
	} {
		if d < 0 {
			return fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
	}
	for name, v := range map[string]int{
		"SuspicionMult": c.SuspicionMult, "SuspicionMaxTimeoutMult": c.SuspicionMaxTimeoutMult,
		"GossipNodes": c.GossipNodes, "EventQueue": c.EventQueue,
	} {
		if v < 0 {
			return fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
	}
	if c.EventQueue == 0 {
		c.EventQueue = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// FailureBound is how long, at most, members of an n-node cluster with
// this configuration should take to declare a crashed member dead when
// nothing else is wrong: a probe round, the probe and indirect probe
// timeouts, the longest suspicion timeout, and a few gossip rounds to
// spread the verdict. Local health awareness can stretch probes up to 8×
// on an overloaded member.
func (c Config) FailureBound(n int) (time.Duration, error) {
	mc, err := c.memberlist()
	if err != nil {
		return 0, err
	}
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	suspicion := time.Duration(float64(mc.SuspicionMult*mc.SuspicionMaxTimeoutMult) * scale * float64(mc.ProbeInterval))
	return 2*mc.ProbeInterval + mc.ProbeTimeout + suspicion + 5*mc.GossipInterval, nil
}
