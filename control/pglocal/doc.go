// Package pglocal runs a private PostgreSQL server from the system's
// server binaries: for tests (through package pgtest) and for `stapes demo`
// when no DATABASE_URL is given.
//
// Start initialises a cluster in a directory of its own (or reuses one
// already initialised there), writes its settings (trust authentication on
// a unix socket inside that directory and on 127.0.0.1 only, fsync on, small
// shared buffers) and runs the postmaster as a child process, so the
// Server always knows its exact pid: Stop shuts it down (fast mode) and
// waits, Kill sends SIGKILL to it and to its backends by pid, Restart
// brings it back on the same port. Nothing is ever signalled by name.
//
// PostgreSQL refuses to run as root. When the calling process is root, the
// server runs as an unprivileged system user (Options.User, default
// "stapes-pg", created with useradd when missing, else "nobody") that owns
// the directory.
//
// If the postmaster outlives its owner (the test binary is killed), the
// kernel sends it SIGINT (a fast shutdown) when the owning process dies.
package pglocal
