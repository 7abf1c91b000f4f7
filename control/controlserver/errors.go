package controlserver

import "errors"

// Sentinel errors.
var (
	// ErrInvalidConfig: Config failed validation in New.
	ErrInvalidConfig = errors.New("controlserver: invalid config")
	// ErrNoRelay: no live relay can take a new session.
	ErrNoRelay = errors.New("controlserver: no live relay available")
	// ErrNoSigningKey: no signing key could be loaded or created.
	ErrNoSigningKey = errors.New("controlserver: no usable signing key")
	// ErrSealed: a sealed signing key does not open with the configured
	// secret (another deployment's secret, or a corrupted row).
	ErrSealed = errors.New("controlserver: sealed signing key does not open")
	// ErrBadToken: an API token is malformed, forged, expired or revoked.
	ErrBadToken = errors.New("controlserver: invalid API token")
)
