package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"
)

// Config configures a Client. Zero optional fields take the defaults their
// comments state.
type Config struct {
	// URLs of relays: ws://, wss:// or quic://host:port. Required. Each
	// connection attempt uses the next URL, round robin, so a list naming
	// both transports resumes on the other one when a connection is lost.
	// A GOAWAY redirect is tried once before the rotation continues.
	URLs []string

	// Token returns the session token for one connection attempt. Required.
	// It is called before every attempt, so it may refresh the token; it
	// must return when ctx ends. Its errors are retried with backoff.
	// Tokens are never logged.
	Token func(ctx context.Context) ([]byte, error)

	// Session is the fitting session id sent in HELLO. Optional: the token
	// names the session; when set, the relay checks they agree.
	Session string

	// Resume and LastSeq resume the first connection from a position the
	// application kept (LastSeq()). Later connections always resume from the
	// highest seq seen.
	Resume  bool
	LastSeq uint64

	// TLS configures wss:// and quic:// connections. It is cloned; QUIC sets
	// NextProtos to "stapes/1". Default: system roots.
	TLS *tls.Config

	// DialContext, when set, opens the TCP connections of ws:// and wss://
	// (through a proxy, from a chosen interface or network namespace).
	// Default: a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// ListenPacket, when set, opens the UDP socket of each quic://
	// connection; the client closes it with the connection. Default: a new
	// socket per connection.
	ListenPacket func(ctx context.Context) (net.PacketConn, error)

	// Logger receives connection-level logs (ids and codes only, never
	// payloads or tokens). Default: discard.
	Logger *slog.Logger

	// BackoffMin and BackoffMax bound the reconnect and retry delay, which
	// doubles per failed attempt with jitter. Defaults 100 ms and 5 s.
	BackoffMin time.Duration
	BackoffMax time.Duration

	// ConnectTimeout bounds one attempt: dial, HELLO, WELCOME. Default 10 s.
	ConnectTimeout time.Duration

	// PingInterval is how long the connection may be idle before the client
	// sends PING; after 3 intervals without any frame it is declared dead.
	// Default: the relay's ping_ms from WELCOME, or 15 s if it sends none.
	PingInterval time.Duration

	// MaxPending bounds durable sends that have not reached their final
	// receipt (or failed). Send blocks while the bound is reached. Default 256.
	MaxPending int

	// MaxUnconfirmedAcks bounds acks waiting for their RECEIPT; beyond it the
	// oldest automatic `received` acks are forgotten. Default 4096.
	MaxUnconfirmedAcks int

	// EphemeralQueue bounds queued ephemeral sends per class; beyond it Send
	// returns ErrQueueFull. Default 64.
	EphemeralQueue int

	// DeliveryBuffer is the capacity of the Deliveries channel. Durable
	// deliveries wait for room; ephemeral ones are dropped when it is full.
	// Default 64.
	DeliveryBuffer int

	// EventBuffer is the capacity of the Events channel; events that find it
	// full are dropped and counted. Default 32.
	EventBuffer int

	// DisableAutoAck stops the client from acking `received` for every
	// durable delivery; the application then calls Ack itself.
	DisableAutoAck bool

	// dial replaces the transport dialer (unit tests only).
	dial dialFunc
}

// withDefaults returns a validated copy of c with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if len(c.URLs) == 0 {
		return c, fmt.Errorf("%w: no URLs", ErrInvalidConfig)
	}
	c.URLs = append([]string(nil), c.URLs...)
	for _, raw := range c.URLs {
		if _, err := parseURL(raw); err != nil {
			return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	if c.Token == nil {
		return c, fmt.Errorf("%w: no Token func", ErrInvalidConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.BackoffMin, 100*time.Millisecond)
	def(&c.BackoffMax, 5*time.Second)
	def(&c.ConnectTimeout, 10*time.Second)
	if c.BackoffMax < c.BackoffMin {
		return c, fmt.Errorf("%w: BackoffMax %v < BackoffMin %v", ErrInvalidConfig, c.BackoffMax, c.BackoffMin)
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&c.MaxPending, 256)
	defInt(&c.MaxUnconfirmedAcks, 4096)
	defInt(&c.EphemeralQueue, 64)
	defInt(&c.DeliveryBuffer, 64)
	defInt(&c.EventBuffer, 32)
	if c.dial == nil {
		c.dial = dialNetwork
	}
	return c, nil
}

// parseURL checks that raw names a transport this package speaks.
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedURL, err)
	}
	switch u.Scheme {
	case "ws", "wss", "quic":
	default:
		return nil, fmt.Errorf("%w: scheme %q", ErrUnsupportedURL, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: no host in %q", ErrUnsupportedURL, raw)
	}
	return u, nil
}

// secure reports whether a URL's transport is encrypted.
func secure(u *url.URL) bool { return u.Scheme == "wss" || u.Scheme == "quic" }
