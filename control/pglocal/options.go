package pglocal

import (
	"fmt"
	"log/slog"
	"time"
)

// Options configures Start. Zero fields take the defaults in their comments.
type Options struct {
	// Dir is the server's own directory. Required. It holds data/ (the
	// cluster), sock/ (the unix socket, when the path is short enough for
	// one; otherwise a private directory under os.TempDir()) and
	// postgres.log. An initialised cluster found there is reused.
	Dir string

	// Port is the TCP port on 127.0.0.1. Default 0: a free port, chosen at
	// the first start and kept by Restart.
	Port int

	// Logger receives lifecycle lines (started, stopped, killed). Default
	// slog.Default(). The server's own log goes to Dir/postgres.log.
	Logger *slog.Logger

	// Binaries are the server programs. Default: FindBinaries.
	Binaries *Binaries

	// User is the system user the server runs as when the calling process
	// is root (PostgreSQL refuses to run as root). Default "stapes-pg",
	// created with useradd when missing; if that fails, "nobody". Ignored
	// when not root: the server runs as the calling user.
	User string

	// MaxConnections is max_connections. Default 100.
	MaxConnections int

	// SharedBuffers is shared_buffers. Default "32MB".
	SharedBuffers string

	// StartTimeout bounds how long Start and Restart wait for the server
	// to accept connections (crash recovery after Kill included), within
	// the context's deadline. Default 2 minutes.
	StartTimeout time.Duration

	// StopTimeout bounds Close's fast shutdown before it escalates to an
	// immediate shutdown and then SIGKILL. Default 1 minute.
	StopTimeout time.Duration

	// Settings are further postgresql.conf settings, name to value (the
	// value is written quoted). They override the ones above. fsync stays
	// on unless a setting turns it off.
	Settings map[string]string
}

const (
	defaultMaxConnections = 100
	defaultSharedBuffers  = "32MB"
	defaultStartTimeout   = 2 * time.Minute
	defaultStopTimeout    = time.Minute
)

// EnsureDefaults fills unset fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.User == "" {
		o.User = defaultUser
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = defaultMaxConnections
	}
	if o.SharedBuffers == "" {
		o.SharedBuffers = defaultSharedBuffers
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = defaultStopTimeout
	}
	return o
}

func (o *Options) validate() error {
	switch {
	case o.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidOptions)
	case o.Port < 0 || o.Port > 65535:
		return fmt.Errorf("%w: Port %d", ErrInvalidOptions, o.Port)
	case o.MaxConnections < 1:
		return fmt.Errorf("%w: MaxConnections %d", ErrInvalidOptions, o.MaxConnections)
	case o.StartTimeout < 0 || o.StopTimeout < 0:
		return fmt.Errorf("%w: negative timeout", ErrInvalidOptions)
	}
	return nil
}
