package pglocal

import "errors"

var (
	// ErrNotInstalled: no PostgreSQL server binaries (initdb and postgres)
	// were found on $PATH or under /usr/lib/postgresql/*/bin. Install the
	// Debian postgresql package or set DATABASE_URL.
	ErrNotInstalled = errors.New("pglocal: PostgreSQL server binaries not found (install the Debian postgresql package, or set DATABASE_URL)")
	// ErrInvalidOptions: Options failed validation.
	ErrInvalidOptions = errors.New("pglocal: invalid options")
	// ErrDirNotAccessible: running as root, the unprivileged server user
	// cannot reach the directory (a parent directory is not searchable by
	// it, as /root usually is not). Choose a directory under /tmp or
	// /var/tmp.
	ErrDirNotAccessible = errors.New("pglocal: directory not accessible to the server user")
	// ErrVersionMismatch: the directory holds a cluster of another major
	// version than the binaries.
	ErrVersionMismatch = errors.New("pglocal: data directory version differs from the server binaries")
	// ErrStart: the server did not become ready (the error carries the end
	// of the server log).
	ErrStart = errors.New("pglocal: server did not start")
	// ErrNotRunning: the operation needs a running server.
	ErrNotRunning = errors.New("pglocal: server not running")
	// ErrClosed: the Server has been closed.
	ErrClosed = errors.New("pglocal: server closed")
)
