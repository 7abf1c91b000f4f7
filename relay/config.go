package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/quic-go/quic-go"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// Authenticator verifies session tokens. *token.Keyring implements it.
// Verify is called concurrently from many connections.
type Authenticator interface {
	Verify(tok []byte, now time.Time) (token.Claims, error)
}

var _ Authenticator = (*token.Keyring)(nil)

// DeviceSource is the authoritative device config (controld's, from
// Postgres): the version the hearing aid last applied and its parameters.
// control.Directory implements it. It is asked when a session starts on
// this relay; errors leave the relay on its local state.
type DeviceSource interface {
	DeviceConfig(ctx context.Context, tenant, serial string) (version uint64, params map[string]int64, err error)
}

// ParamLimit bounds one device parameter.
type ParamLimit struct {
	Min, Max int64 // inclusive bounds of the value
	MaxStep  int64 // largest change per command against the head value; 0 = no step limit
}

// ModelLimits are the safety limits of one hearing-aid model, by parameter
// name. A parameter without an entry is refused unless Open is set.
type ModelLimits struct {
	Params map[string]ParamLimit
	Open   bool // allow parameters that have no entry
}

// Config configures a Server. Zero fields take the defaults in their
// comments.
type Config struct {
	// Store holds session logs and device state. Required.
	Store Store
	// Auth verifies HELLO tokens. Required.
	Auth Authenticator
	// Limits are the per-model safety limits for config commands; the key is
	// the token's model claim. Commands for a model without an entry use
	// DefaultLimits.
	Limits map[string]ModelLimits
	// Devices, if set, is asked for a device's applied config when a
	// session starts, so compare-and-set holds across relays and sessions.
	Devices DeviceSource
	// Region is this relay's region; replicas are chosen within it.
	Region string
	// Cluster, with PeerSecret, turns on replication: every commit batch
	// goes to the session's replica (a live relay of Region, rendezvous
	// hashing) before it is committed here and acknowledged. nil: no
	// replication (a single relay).
	Cluster Cluster
	// PeerSecret authenticates relay-to-relay links (all relays of a
	// cluster share it). At least 16 bytes when Cluster is set.
	PeerSecret []byte
	// PeerTLS is the TLS client config for dialing peers; default: no
	// certificate verification (the peer proves PeerSecret, bound to the
	// TLS session).
	PeerTLS *tls.Config
	// SelfURL is where clients reach this relay (quic://host:port or
	// wss://host:port/v1/connect), sent to peers for redirects.
	SelfURL string
	// RequireReplica refuses commits (the sender gets unavailable and
	// retries) when no replica is reachable, instead of committing alone
	// with PERSISTED flagged degraded.
	RequireReplica bool
	// SyncHome makes a replicating home fsync its own copy of a batch
	// before PERSISTED too. By default the replica's fsync makes the batch
	// durable (PERSISTED waits for it), and the home, which commits only
	// after its replica has the batch, applies its copy at once and syncs
	// it in the background (when its Store supports CommitUnsynced): one
	// fsync in series instead of two. Either way the home never holds an
	// entry its replica lacks, and a home that crashes before its sync
	// fetches the lost tail back from its replica when the session loads
	// (replica.go); after a crash it waits for that replica, as long as
	// the cluster counts it as a member, rather than serve or replicate
	// the rest. A degraded commit (no replica) is always synced here.
	SyncHome bool
	// ReplicaTimeout bounds one replication round trip. Default 2s.
	ReplicaTimeout time.Duration
	// ProbeTimeout bounds asking a session's home whether it is alive
	// before taking the session over (peers of a region are close, and
	// links are kept warm, so a live home answers in milliseconds).
	// Default 300ms.
	ProbeTimeout time.Duration
	// QUICResetKey, if set, is the client QUIC listener's stateless reset
	// key. Keep it across restarts (relayd stores it in its data
	// directory): a relay restarted on the same address then answers
	// packets of its former process's connections with a reset, and
	// clients reconnect at once instead of waiting for their idle timeout.
	QUICResetKey *quic.StatelessResetKey
	// Forward says when a participant whose session lives on another
	// relay is served here, through a relay-to-relay link to the session's
	// home, instead of being redirected there (GOAWAY): ForwardRegion (the
	// default) when the home is in another region — the participant keeps
	// its nearest relay and the link crosses the backbone — ForwardAlways,
	// or ForwardNever.
	Forward ForwardMode
	// OnSessionEnded, if set, is called after EndSession ended a session
	// (relayd ends its TURN allocations there).
	OnSessionEnded func(id string)
	// EventQueue bounds the session lifecycle events waiting to be
	// written (when Store is an EventStore). Default 4096.
	EventQueue int
	// DefaultLimits apply to models not in Limits. Zero: every parameter
	// within ±1200 (0.1 dB units), at most 60 per step.
	DefaultLimits *ModelLimits
	// RelayID names this relay in logs and metrics. Default "relay".
	RelayID string
	// Logger, default slog.Default().
	Logger *slog.Logger
	// Registerer for metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// MaxFrame is the largest frame accepted, bytes. Default wire.DefaultMaxFrame.
	MaxFrame int
	// HelloTimeout is how long a new connection may take to send HELLO. Default 10s.
	HelloTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake and WebSocket upgrade of a
	// new connection. Default 10s.
	HandshakeTimeout time.Duration
	// PingInterval is the keepalive interval; a peer silent for three
	// intervals is closed. Default 15s.
	PingInterval time.Duration
	// EphemeralQueue is the per-connection, per-class queue depth for
	// ephemeral frames; a full queue drops (reason queue_full). Default 256.
	EphemeralQueue int
	// ReplyQueue bounds queued control frames and replies (PERSISTED,
	// ERROR) per connection; a peer that lets it fill is disconnected
	// (reason slow_consumer). Default 4096.
	ReplyQueue int
	// MaxBatch bounds entries per session group commit. Default 512.
	MaxBatch int
	// TailCache is how many recent entries each session keeps in memory for
	// delivery without a store read. Default 1024.
	TailCache int
	// TailBytes bounds the frame bytes of those entries per session.
	// Default 256 KiB.
	TailBytes int
	// MaxConnsPerSession bounds connections attached to one session. Default 16.
	MaxConnsPerSession int
	// MaxConns bounds open client connections; more are closed at accept
	// (reason max_conns). Default 100000.
	MaxConns int
	// AcceptRate and AcceptBurst bound new connections per second (token
	// bucket); beyond them connections are closed at accept (reason
	// accept_rate). Defaults 2000/s and 4000.
	AcceptRate  int
	AcceptBurst int
	// DrainRedirect is sent in GOAWAY when draining ("" = reconnect here later).
	DrainRedirect string
	// DrainGrace is the GOAWAY after_ms: how long clients get to leave. Default 5s.
	DrainGrace time.Duration
	// OriginPatterns lists browser origins allowed to open WebSockets
	// (host patterns as in coder/websocket); requests without an Origin
	// header (native apps) are always allowed. Default: same origin only.
	OriginPatterns []string
	// Delay, when set, is added before every durable commit. It exists so
	// the benchmark harness can prove it tells a slow relay from a fast
	// one; never set it in production.
	Delay time.Duration
	// Now is the clock, default time.Now.
	Now func() time.Time
}

func (c *Config) ensureDefaults() error {
	if c.Store == nil {
		return fmt.Errorf("%w: Store is required", ErrConfig)
	}
	if c.Auth == nil {
		return fmt.Errorf("%w: Auth is required", ErrConfig)
	}
	if c.RelayID == "" {
		c.RelayID = "relay"
	}
	if c.EventQueue <= 0 {
		c.EventQueue = 4096
	}
	if c.ReplicaTimeout <= 0 {
		c.ReplicaTimeout = 2 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 300 * time.Millisecond
	}
	switch c.Forward {
	case "":
		c.Forward = ForwardRegion
	case ForwardRegion, ForwardAlways, ForwardNever:
	default:
		return fmt.Errorf("%w: Forward %q: want %q, %q or %q", ErrConfig, c.Forward, ForwardRegion, ForwardAlways, ForwardNever)
	}
	if c.Cluster != nil && len(c.PeerSecret) < 16 {
		return fmt.Errorf("%w: replication (Cluster) needs a PeerSecret of at least 16 bytes", ErrConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.MaxFrame < 1024 || c.MaxFrame > 16<<20 {
		return fmt.Errorf("%w: MaxFrame %d outside 1 KiB..16 MiB", ErrConfig, c.MaxFrame)
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 15 * time.Second
	}
	if c.EphemeralQueue <= 0 {
		c.EphemeralQueue = 256
	}
	if c.ReplyQueue <= 0 {
		c.ReplyQueue = 4096
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.TailCache <= 0 {
		c.TailCache = 1024
	}
	if c.TailBytes <= 0 {
		c.TailBytes = 256 << 10
	}
	if c.MaxConnsPerSession <= 0 {
		c.MaxConnsPerSession = 16
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 100000
	}
	if c.AcceptRate <= 0 {
		c.AcceptRate = 2000
	}
	if c.AcceptBurst <= 0 {
		c.AcceptBurst = 2 * c.AcceptRate
	}
	if c.DrainGrace <= 0 {
		c.DrainGrace = 5 * time.Second
	}
	if c.DefaultLimits == nil {
		c.DefaultLimits = &ModelLimits{Open: true, Params: map[string]ParamLimit{"*": {Min: -1200, Max: 1200, MaxStep: 60}}}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
