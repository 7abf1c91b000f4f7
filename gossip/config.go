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
	ProfileLAN   Profile = iota // one data centre: memberlist's LAN timing, tuned (see LANConfig)
	ProfileLocal                // one host (tests, demos): memberlist's local timing, tightened
	ProfileWAN                  // members across regions: memberlist's WAN timing
	// ProfileBareLAN is memberlist.DefaultLANConfig unchanged, without
	// settling: what plain memberlist does, the baseline benchmarks
	// compare ProfileLAN with. Not for production.
	ProfileBareLAN
)

func (p Profile) String() string {
	switch p {
	case ProfileLAN:
		return "lan"
	case ProfileLocal:
		return "local"
	case ProfileWAN:
		return "wan"
	case ProfileBareLAN:
		return "bare-lan"
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

	// Profile picks the base timing. Default ProfileLAN. The defaults
	// below are the presets' (Local, LAN, WAN); ProfileBareLAN takes
	// memberlist.DefaultLANConfig's and does not settle. README.md says
	// why each value is what it is.
	Profile Profile
	// ProbeInterval is how often a member probes a random other.
	// Default: Local 200ms, LAN 500ms, WAN 5s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for an ack before indirect
	// probes. Default: Local 100ms, LAN 300ms, WAN 3s.
	ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspect has to refute before it is
	// declared dead: SuspicionMult × max(1, log10 N) × ProbeInterval at
	// least, SuspicionMaxTimeoutMult times that at most; it also sets how
	// many independent suspicions shorten the wait to the least
	// (SuspicionMult − 2). Default: Local 3, LAN 5, WAN 6.
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout (see
	// SuspicionMult). Default 6.
	SuspicionMaxTimeoutMult int
	// GossipInterval is how often a member gossips to GossipNodes others.
	// Default: Local 50ms, LAN 200ms, WAN 500ms.
	GossipInterval time.Duration
	// GossipNodes is how many members each gossip round reaches.
	// Default: Local 3, LAN 4, WAN 4.
	GossipNodes int
	// RetransmitMult sets how often each member passes on a membership
	// message: RetransmitMult × ceil(log10(N+1)) times. It is what gossip
	// bandwidth grows with (every meta update costs about that many
	// copies per member). Default: Local 2, LAN 3, WAN 4.
	RetransmitMult int
	// PushPullInterval is how often a member syncs full state over TCP with
	// a random other (memberlist stretches it above 32 members: ×3 at 100).
	// Default: Local 5s, LAN 15s, WAN 60s.
	PushPullInterval time.Duration
	// SettleInterval is how often a node syncs full state with a random
	// member while it settles after a Join, until its member list is
	// stable (see SettleQuiet); after a sync that brought no news the wait
	// doubles, up to SettleQuiet, and it is at least 4× the last sync's
	// duration, so settling never takes more than a fifth of a busy
	// node's time. This is what makes a cold start converge
	// in seconds: a node that joined before the others reached the seeds
	// would otherwise learn of them only from gossip it may miss, then
	// from the next PushPullInterval. Negative: no settling.
	// Default: Local 100ms, LAN 500ms, WAN 2s.
	SettleInterval time.Duration
	// SettleQuiet ends settling: the member list has not changed for this
	// long and the last three peers synced with had exactly our members.
	// Settling also ends after 60 × SettleInterval, stable or not.
	// Default: Local 500ms, LAN 2s, WAN 8s.
	SettleQuiet time.Duration
	// TCPTimeout bounds a TCP exchange (join, push/pull, fallback probe,
	// leave notice). Default: Local 1s, LAN 10s, WAN 30s.
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
// 50ms, push/pull every 5s and settling every 100ms, so a crash is
// declared within a few seconds.
func LocalConfig() Config {
	return Config{Profile: ProfileLocal, BindAddr: "127.0.0.1"}
}

// LANConfig is for members in one data centre: memberlist's
// DefaultLANConfig tuned for up to a few hundred relays (README.md has the
// reasons and the measurements): probes every 500ms (timeout 300ms) and
// suspicion for at least 5 × log10(N) probe intervals, so a crash is
// declared in about 6s at 100 members while a node too busy to answer
// for a few seconds is not; gossip every 200ms to 4 members; each message
// passed on 3 × ceil(log10(N+1)) times; push/pull every 15s; settling
// every 500ms after a Join; dead IDs reclaimable after 30s.
func LANConfig() Config { return Config{Profile: ProfileLAN} }

// WANConfig is for members across regions: memberlist's DefaultWANConfig,
// settling every 2s after a Join, dead IDs reclaimable after 60s.
func WANConfig() Config { return Config{Profile: ProfileWAN} }

// BareLANConfig is memberlist.DefaultLANConfig unchanged and without
// settling (ProfileBareLAN): the baseline `stapes bench` compares
// LANConfig with. Not for production.
func BareLANConfig() Config { return Config{Profile: ProfileBareLAN} }

// settle is the settling schedule after a Join.
type settle struct {
	interval time.Duration // 0: no settling
	quiet    time.Duration
}

// settleAgree is how many peers in a row must hold exactly our members
// before settling ends.
const settleAgree = 3

// settleRounds bounds settling: it ends after this many intervals.
const settleRounds = 60

// settle returns the settling schedule of c's profile and fields.
func (c *Config) settle() settle {
	var s settle
	switch c.Profile {
	case ProfileLocal:
		s = settle{100 * time.Millisecond, 500 * time.Millisecond}
	case ProfileLAN:
		s = settle{500 * time.Millisecond, 2 * time.Second}
	case ProfileWAN:
		s = settle{2 * time.Second, 8 * time.Second}
	}
	setDur(&s.interval, c.SettleInterval)
	setDur(&s.quiet, c.SettleQuiet)
	if s.interval < 0 {
		s.interval = 0
	}
	return s
}

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
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 300 * time.Millisecond
		mc.SuspicionMult = 5
		mc.GossipNodes = 4
		mc.RetransmitMult = 3
		mc.PushPullInterval = 15 * time.Second
		mc.DeadNodeReclaimTime = 30 * time.Second
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
		mc.DeadNodeReclaimTime = 60 * time.Second
	case ProfileBareLAN:
		mc = memberlist.DefaultLANConfig()
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
	setInt(&mc.RetransmitMult, c.RetransmitMult)
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
		"SettleQuiet": c.SettleQuiet,
	} {
		if d < 0 {
			return fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
	}
	for name, v := range map[string]int{
		"SuspicionMult": c.SuspicionMult, "SuspicionMaxTimeoutMult": c.SuspicionMaxTimeoutMult,
		"GossipNodes": c.GossipNodes, "RetransmitMult": c.RetransmitMult, "EventQueue": c.EventQueue,
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
