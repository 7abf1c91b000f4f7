package pgstore

import (
	"fmt"
	"log/slog"
)

// Config configures Open. Zero fields take the defaults in their comments.
type Config struct {
	// DSN is the primary's connection string (URL or key=value). Required.
	// The write pool keeps session-local temporary staging tables, so a
	// pooler in front of it must use session pooling, not transaction
	// pooling.
	DSN string

	// ReadDSN, if set, is a read-only replica for heavy reads (listing a
	// clinician's patients with their devices); its answers may lag the
	// primary. Default "": everything goes to the primary. Authorization
	// checks (care relationships) always read the primary.
	ReadDSN string

	// MaxConns is the size of the write pool. Default 10.
	MaxConns int32

	// ReadMaxConns is the size of the read pool. Default MaxConns.
	ReadMaxConns int32

	// ApplicationName is reported to the server (pg_stat_activity).
	// Default "stapes-controld".
	ApplicationName string

	// Logger receives the store's log lines (ids and counts only).
	// Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultMaxConns        = 10
	defaultApplicationName = "stapes-controld"
)

// EnsureDefaults fills unset fields with their defaults and returns c.
func (c *Config) EnsureDefaults() *Config {
	if c.MaxConns == 0 {
		c.MaxConns = defaultMaxConns
	}
	if c.ReadMaxConns == 0 {
		c.ReadMaxConns = c.MaxConns
	}
	if c.ApplicationName == "" {
		c.ApplicationName = defaultApplicationName
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c *Config) validate() error {
	switch {
	case c.DSN == "":
		return fmt.Errorf("%w: DSN is required", ErrInvalidConfig)
	case c.MaxConns < 1 || c.ReadMaxConns < 1:
		return fmt.Errorf("%w: pool sizes must be positive", ErrInvalidConfig)
	}
	return nil
}
