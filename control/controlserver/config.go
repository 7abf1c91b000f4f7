package controlserver

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
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
	}
	return nil
}
