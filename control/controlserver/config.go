package controlserver

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
	"github.com/stapes-relay/stapes/turn"
)

// MinSecretLen is the shortest Config.Secret accepted, in bytes.
const MinSecretLen = 32

// Config configures New. Zero fields take the defaults in their comments.
type Config struct {
	// Store is the Postgres store, migrated. Required.
	Store *pgstore.Store

	// Secret is the server's own secret, at least MinSecretLen random
	// bytes, the same on every controld of a deployment. Keys derived
	// from it seal the signing keys' private halves in Postgres
	// (AES-256-GCM) and sign clinicians' API tokens (HMAC-SHA256).
	// Losing it invalidates every sealed signing key and API token.
	// Required.
	Secret []byte

	// OperatorToken is the bearer token of the operator API. Default "":
	// the operator API refuses every request.
	OperatorToken string

	// APITokenTTL is the lifetime of a clinician's API token from
	// POST /v1/login. Default 12h.
	APITokenTTL time.Duration

	// SessionTokenTTL is the lifetime of the relay session tokens minted
	// by POST /v1/sessions. Default 1h.
	SessionTokenTTL time.Duration

	// TURNSecrets are the relays' TURN REST shared secrets, newest first
	// (the first mints; the same file relayd reads). With them, a session
	// answer carries ice_servers for the session's relay — its published
	// "turn" and "turns" addresses — with a credential for that session
	// ("expiry:session") that expires with the session tokens. Default
	// none: no ice_servers.
	TURNSecrets [][]byte

	// RelayLiveness is how recent a relay's last heartbeat must be for it
	// to count as live. Default 30s.
	RelayLiveness time.Duration

	// HeartbeatInterval is what relays are told to heartbeat at. Default
	// 10s (a third of RelayLiveness when that is set).
	HeartbeatInterval time.Duration

	// KeyCacheTTL is how long the signing keys read from Postgres are
	// reused before they are read again (so a rotation or revocation made
	// through another controld is seen within it). Default 10s.
	KeyCacheTTL time.Duration

	// MaxSyncBody bounds a sync batch body, bytes. Default 64 MiB.
	MaxSyncBody int64

	// MaxJSONBody bounds a JSON request body, bytes. Default 1 MiB.
	MaxJSONBody int64

	// LoginPerIP is how many login attempts one source address may make
	// per minute (a token bucket: that many at once, then one every
	// minute/LoginPerIP). Default 60; negative: unlimited.
	LoginPerIP int

	// LoginPerName is how many login attempts may name one e-mail address
	// per minute, from anywhere. Default 10; negative: unlimited.
	LoginPerName int

	// MapPerIP is how many GET /v1/map requests one source address may
	// make per minute. Default 120; negative: unlimited.
	MapPerIP int

	// MapMaxAge is how long clients and caches may reuse the public relay
	// map (Cache-Control max-age), and how long controld reuses the map it
	// built before reading Postgres again. Default 10s.
	MapMaxAge time.Duration

	// PlacementMaxAge is how long clients' RTT reports count for placing
	// sessions (placement.go). Default 24h.
	PlacementMaxAge time.Duration

	// ClientIP returns the source address a request is rate limited by.
	// Default: the host of the connection's remote address. Set it behind
	// a reverse proxy that reports the client (and strips what clients
	// send), or every client shares the proxy's limit.
	ClientIP func(*http.Request) string

	// JobPollInterval is how often RunJobs looks for due scheduled jobs.
	// Default 5s.
	JobPollInterval time.Duration

	// JobLease is how long a job claimed by a controld stays its own; a
	// job still running after that (its controld died) is run again by
	// any controld. Each attempt runs with this timeout. Default 5m.
	JobLease time.Duration

	// JobMaxAttempts is how often a failing job is tried before it is
	// marked failed. Default 5.
	JobMaxAttempts int

	// InstanceID names this controld as a job runner (scheduled_jobs.
	// locked_by). Default "controld-" and random characters.
	InstanceID string

	// Password are the argon2id parameters new passwords are hashed with.
	// Default password.Default.
	Password *password.Params

	// Logger receives the server's log lines (ids only). Default
	// slog.Default().
	Logger *slog.Logger

	// Registerer for metrics; nil registers nothing.
	Registerer prometheus.Registerer

	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// EnsureDefaults fills unset fields with their defaults and returns c.
func (c *Config) EnsureDefaults() *Config {
	if c.APITokenTTL <= 0 {
		c.APITokenTTL = 12 * time.Hour
	}
	if c.SessionTokenTTL <= 0 {
		c.SessionTokenTTL = time.Hour
	}
	if c.RelayLiveness <= 0 {
		c.RelayLiveness = 30 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = c.RelayLiveness / 3
	}
	if c.KeyCacheTTL <= 0 {
		c.KeyCacheTTL = 10 * time.Second
	}
	if c.MaxSyncBody <= 0 {
		c.MaxSyncBody = 64 << 20
	}
	if c.MaxJSONBody <= 0 {
		c.MaxJSONBody = 1 << 20
	}
	c.LoginPerIP = orDefault(c.LoginPerIP, 60)
	c.LoginPerName = orDefault(c.LoginPerName, 10)
	c.MapPerIP = orDefault(c.MapPerIP, 120)
	if c.MapMaxAge <= 0 {
		c.MapMaxAge = 10 * time.Second
	}
	if c.PlacementMaxAge <= 0 {
		c.PlacementMaxAge = 24 * time.Hour
	}
	if c.ClientIP == nil {
		c.ClientIP = remoteHost
	}
	if c.JobPollInterval <= 0 {
		c.JobPollInterval = 5 * time.Second
	}
	if c.JobLease <= 0 {
		c.JobLease = 5 * time.Minute
	}
	if c.JobMaxAttempts <= 0 {
		c.JobMaxAttempts = 5
	}
	if c.InstanceID == "" {
		c.InstanceID = "controld-" + rand.Text()[:10]
	}
	if c.Password == nil {
		p := password.Default
		c.Password = &p
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// remoteHost is the host of the request's remote address.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	case len(c.Secret) < MinSecretLen:
		return fmt.Errorf("%w: Secret must be at least %d bytes (got %d)", ErrInvalidConfig, MinSecretLen, len(c.Secret))
	case c.OperatorToken != "" && len(c.OperatorToken) < 16:
		return fmt.Errorf("%w: OperatorToken must be at least 16 characters", ErrInvalidConfig)
	case c.HeartbeatInterval >= c.RelayLiveness:
		return fmt.Errorf("%w: HeartbeatInterval (%v) must be shorter than RelayLiveness (%v)", ErrInvalidConfig, c.HeartbeatInterval, c.RelayLiveness)
	case c.SessionTokenTTL > 24*time.Hour:
		return fmt.Errorf("%w: SessionTokenTTL above 24h", ErrInvalidConfig)
	case len(c.TURNSecrets) > 0 && (&turn.Credentials{Secrets: c.TURNSecrets}).Check() != nil:
		return fmt.Errorf("%w: TURNSecrets: %w", ErrInvalidConfig, (&turn.Credentials{Secrets: c.TURNSecrets}).Check())
	case len(c.InstanceID) > 128:
		return fmt.Errorf("%w: InstanceID is longer than 128 bytes", ErrInvalidConfig)
	}
	return nil
}
