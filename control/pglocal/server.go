package pglocal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Server is a private PostgreSQL server. Its methods are safe for
// concurrent use.
type Server struct {
	opts    Options
	log     *slog.Logger
	bins    Binaries
	run     runAs
	dir     string // Options.Dir, absolute
	dataDir string
	sockDir string
	logPath string

	mu     sync.Mutex // guards the fields below
	port   int
	pm     *postmaster // nil while stopped
	closed bool
}

// Start initialises (or reuses) the cluster in opts.Dir and starts the
// server, returning when it accepts connections.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts.EnsureDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("%w: Dir: %v", ErrInvalidOptions, err)
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
		port:    opts.Port,
	}
	if opts.Binaries != nil {
		s.bins = *opts.Binaries
	} else if s.bins, err = FindBinaries(ctx); err != nil {
		return nil, err
	}
	if s.run, err = resolveUser(ctx, s.log, opts.User); err != nil {
		return nil, err
	}
	if err := s.prepareDir(); err != nil {
		return nil, err
	}
	if err := s.ensureCluster(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startLocked(ctx, opts.Port == 0); err != nil {
		return nil, err
	}
	return s, nil
}

// prepareDir creates the server directory and the socket directory, owned
// by the server user.
func (s *Server) prepareDir() error {
	// Parents are created searchable by everyone, so that the server user
	// can reach the directory when we are root.
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o755); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := s.run.checkReachable(s.dir); err != nil {
		return err
	}
	if err := os.Mkdir(s.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := s.run.chown(s.dir); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	// A unix socket path is at most 107 bytes: sockDir + "/.s.PGSQL.65535".
	s.sockDir = filepath.Join(s.dir, "sock")
	if len(s.sockDir) > 90 {
		h := sha256.Sum256([]byte(s.dir))
		s.sockDir = filepath.Join(os.TempDir(), "stapes-pgsock-"+hex.EncodeToString(h[:6]))
	}
	if err := os.MkdirAll(s.sockDir, 0o700); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if err := s.run.chown(s.sockDir); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	return nil
}

// startLocked starts the postmaster and waits until it is ready. With
// pickPort it chooses a free port, and retries with another one if the
// port was taken meanwhile. Caller holds s.mu.
func (s *Server) startLocked(ctx context.Context, pickPort bool) error {
	if s.closed {
		return ErrClosed
	}
	if s.pm != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if pickPort {
			p, err := freePort()
			if err != nil {
				return fmt.Errorf("pglocal: choose a port: %w", err)
			}
			s.port = p
		}
		if err := s.writeConf(); err != nil {
			return fmt.Errorf("pglocal: write %s: %w", confFile, err)
		}
		pm, err := s.spawn(ctx)
		if err == nil {
			s.pm = pm
			s.log.Info("postgres started", "dir", s.dir, "port", s.port, "pid", pm.pid, "user", s.run.name, "version", s.bins.Version)
			return nil
		}
		if pickPort && attempt < 3 && strings.Contains(err.Error(), "already in use") {
			continue
		}
		return err
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir is the server's directory (absolute).
func (s *Server) Dir() string { return s.dir }

// PID is the postmaster's process id, 0 while the server is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pm == nil {
		return 0
	}
	return s.pm.pid
}

// DSN is a connection URL for database db over TCP on 127.0.0.1, as the
// superuser "postgres" without a password.
func (s *Server) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// SocketDSN is a connection URL for database db over the unix socket
// (faster than TCP; only root and the server user may open it).
func (s *Server) SocketDSN(db string) string {
	q := url.Values{"host": {s.sockDir}, "port": {strconv.Itoa(s.Port())}, "user": {superuser}, "sslmode": {"disable"}}
	u := url.URL{Scheme: "postgres", Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// Stop shuts the server down in fast mode (open transactions are rolled
// back, a checkpoint is written) and waits until the postmaster has exited.
// If ctx ends first, it escalates: an immediate shutdown, then SIGKILL; the
// error then wraps ctx.Err(). Stopping a stopped server does nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
}

func (s *Server) stopLocked(ctx context.Context) error {
	pm := s.pm
	if pm == nil {
		return nil
	}
	s.pm = nil
	err := pm.stop(ctx)
	if err != nil {
		s.log.Warn("postgres stop escalated", "dir", s.dir, "pid", pm.pid, "err", err)
		return fmt.Errorf("pglocal: stop: %w", err)
	}
	s.log.Info("postgres stopped", "dir", s.dir, "pid", pm.pid)
	return nil
}

// Kill sends SIGKILL to the postmaster and every backend it started, by
// process id, and returns once they are gone: the server crashed, as with
// a power cut. Committed transactions are recovered by the next Restart.
// Killing a stopped server does nothing.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pm := s.pm
	if pm == nil {
		return nil
	}
	s.pm = nil
	if err := pm.kill(); err != nil {
		return fmt.Errorf("pglocal: kill: %w", err)
	}
	s.log.Info("postgres killed", "dir", s.dir, "pid", pm.pid)
	return nil
}

// Restart stops the server if it is running (fast mode) and starts it
// again on the same port, waiting until it accepts connections, which
// includes crash recovery after Kill.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.stopLocked(ctx); err != nil {
		return err
	}
	return s.startLocked(ctx, false)
}

// Close stops the server (fast mode, within Options.StopTimeout, then
// escalating) and waits until it has exited. The directory is kept. Close
// is idempotent; after it, Restart returns ErrClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StopTimeout)
	defer cancel()
	err := s.stopLocked(ctx)
	if filepath.Dir(s.sockDir) != s.dir {
		os.RemoveAll(s.sockDir) // the fallback socket directory under os.TempDir()
	}
	return err
}

// logTail is the end of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	return tail(b, 1500)
}
