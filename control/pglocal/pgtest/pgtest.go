// Package pgtest gives tests a real PostgreSQL database without any
// set-up.
//
// Start returns the DSN of a new, empty database for one test. With
// DATABASE_URL set, the database is created on that server and dropped when
// the test ends. Otherwise one private server per test binary is started
// from the system's binaries (installing the Debian postgresql package
// first when missing and running as root) in os.TempDir()/stapes-pgtest-<pid>
// and shared by every test of the binary. Stop it at the end with
//
//	func TestMain(m *testing.M) { pgtest.Run(m) }
//
// (or call Stop yourself); if a binary never stops it, the server shuts
// down when the binary exits, and the next test binary to use pgtest
// removes the directory.
//
// NewServer starts a server of the test's own, for tests that stop, kill or
// restart it.
package pgtest

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/pglocal"
)

// EnvDSN names the environment variable holding the DSN of an existing
// server to create test databases on.
const EnvDSN = "DATABASE_URL"

const dirPrefix = "stapes-pgtest-"

var (
	once     sync.Once
	mu       sync.Mutex // guards shared and startErr
	shared   *pglocal.Server
	startErr error
	seq      atomic.Int64
)

// Start returns a DSN for a new, empty database that belongs to tb.
func Start(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := dbName(tb.Name())
	if base := os.Getenv(EnvDSN); base != "" {
		if err := pglocal.CreateDatabase(ctx, base, name); err != nil {
			tb.Fatalf("pgtest: create database on %s: %v", EnvDSN, err)
		}
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := pglocal.DropDatabase(ctx, base, name); err != nil {
				tb.Errorf("pgtest: drop database: %v", err)
			}
		})
		dsn, err := withDatabase(base, name)
		if err != nil {
			tb.Fatalf("pgtest: %s: %v", EnvDSN, err)
		}
		return dsn
	}
	srv, err := sharedServer(ctx)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := srv.CreateDatabase(ctx, name); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return srv.SocketDSN(name)
}

// NewServer starts a private server for tb in a new directory, closed and
// removed when tb ends. It ignores DATABASE_URL: tests that kill or restart
// the server need one of their own.
func NewServer(tb testing.TB, opts pglocal.Options) *pglocal.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := pglocal.EnsureInstalled(ctx, quiet()); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp("", dirPrefix+strconv.Itoa(os.Getpid())+".")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	// MkdirTemp makes it 0700; the server user (when root) must enter it.
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	opts.Dir = filepath.Join(dir, "pg")
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	srv, err := pglocal.Start(ctx, opts)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("pgtest: close server: %v", err)
		}
	})
	return srv
}

// Run runs m's tests, then Stop, and returns m.Run's exit code. From
// TestMain: `pgtest.Run(m)` (the test binary exits with the code), or
// `os.Exit(pgtest.Run(m))`.
func Run(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop stops the shared server, if one was started, and removes its
// directory. Later calls to Start fail.
func Stop() {
	once.Do(func() { startErr = fmt.Errorf("pgtest: Stop was called") })
	mu.Lock()
	defer mu.Unlock()
	if shared == nil {
		return
	}
	_ = shared.Close()
	os.RemoveAll(filepath.Dir(shared.Dir()))
	shared = nil
	startErr = fmt.Errorf("pgtest: Stop was called")
}

func sharedServer(ctx context.Context) (*pglocal.Server, error) {
	once.Do(func() {
		s, err := startShared(ctx)
		mu.Lock()
		shared, startErr = s, err
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return shared, startErr
}

func startShared(ctx context.Context) (*pglocal.Server, error) {
	if _, err := pglocal.EnsureInstalled(ctx, quiet()); err != nil {
		return nil, err
	}
	removeStale()
	root := filepath.Join(os.TempDir(), dirPrefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	srv, err := pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(root, "pg"), Logger: quiet()})
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	return srv, nil
}

// removeStale removes the directories of test binaries that are gone,
// stopping their server first if it is somehow still running (it should
// have stopped with its binary).
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		// stapes-pgtest-<pid> (the shared server), stapes-pgtest-<pid>.<n> (NewServer)
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), dirPrefix), ".")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		data := filepath.Join(d, "pg", "data")
		if b, err := os.ReadFile(filepath.Join(data, "postmaster.pid")); err == nil {
			pm, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
			if pm > 0 && isPostmasterOf(pm, data) {
				_ = syscall.Kill(pm, syscall.SIGQUIT)
				for i := 0; i < 500 && running(pm); i++ {
					time.Sleep(10 * time.Millisecond)
				}
				if running(pm) {
					continue
				}
			}
		}
		os.RemoveAll(d)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && !strings.HasPrefix(string(b[i+1:]), " Z")
}

// isPostmasterOf reports whether process pid runs postgres on data.
func isPostmasterOf(pid int, data string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return len(args) == 3 && filepath.Base(args[0]) == "postgres" && args[1] == "-D" && args[2] == data
}

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// dbName is a unique database name that still says which test it is for.
func dbName(test string) string {
	n := fmt.Sprintf("t%d_%d_", os.Getpid(), seq.Add(1))
	s := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(test), "_"), "_")
	if len(n)+len(s) > 63 {
		s = s[:63-len(n)]
	}
	return n + s
}

// withDatabase returns dsn naming database db instead.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path, u.RawPath = "/"+db, ""
		return u.String(), nil
	}
	return dsn + " dbname=" + db, nil
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
