package pglocal

import (
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestFindBinaries(t *testing.T) {
	real, err := FindBinaries(context.Background())
	if err != nil {
		t.Fatalf("FindBinaries: %v (the tests need the postgresql package)", err)
	}
	tests := []struct {
		name    string
		path    string
		glob    string
		wantErr error
	}{
		{"on PATH", real.Dir, "/nonexistent/*/bin", nil},
		{"under the version glob", "", filepath.Join(filepath.Dir(filepath.Dir(real.Dir)), "*", "bin"), nil},
		{"missing", "/nonexistent", "/nonexistent/*/bin", ErrNotInstalled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := findBinaries(context.Background(), tt.path, tt.glob)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && (b.Version != real.Version || b.Postgres == "") {
				t.Errorf("got %+v, want version %d", b, real.Version)
			}
			if err != nil && !strings.Contains(err.Error(), "postgresql package") {
				t.Errorf("error %q does not say what to install", err)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no dir", Options{}},
		{"port too big", Options{Dir: "x", Port: 70000}},
		{"negative port", Options{Dir: "x", Port: -1}},
		{"negative connections", Options{Dir: "x", MaxConnections: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Start(context.Background(), tt.opts); !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("Start = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestStartStopRestart covers the lifecycle on one server: both DSNs work,
// Stop really stops, Restart keeps port and data, a second Start reuses
// the directory, Close is idempotent.
func TestStartStopRestart(t *testing.T) {
	ctx := ctxT(t)
	s := startServer(t, Options{})
	port := s.Port()
	if s.PID() == 0 || port == 0 {
		t.Fatalf("PID %d, port %d after Start", s.PID(), port)
	}
	if err := s.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase(ctx, "app"); err != nil {
		t.Fatalf("CreateDatabase twice: %v", err)
	}
	c := connect(t, s.DSN("app"))
	if _, err := c.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	sc := connect(t, s.SocketDSN("app"))
	if got := count(t, sc, "SELECT count(*) FROM t"); got != 2 {
		t.Errorf("over the socket: %d rows, want 2", got)
	}
	var fsync string
	if err := sc.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
		t.Errorf("fsync = %q (%v), want on", fsync, err)
	}

	pid := s.PID()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if s.PID() != 0 {
		t.Errorf("PID = %d after Stop", s.PID())
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d still exists after Stop: %v", pid, err)
	}
	if err := s.CreateDatabase(ctx, "x"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("CreateDatabase on a stopped server = %v, want ErrNotRunning", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop twice: %v", err)
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.Port() != port {
		t.Errorf("port %d after Restart, want %d", s.Port(), port)
	}
	if got := count(t, connect(t, s.DSN("app")), "SELECT count(*) FROM t"); got != 2 {
		t.Errorf("after Restart: %d rows, want 2", got)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart of a running server: %v", err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close twice: %v", err)
	}
	if err := s.Restart(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Restart after Close = %v, want ErrClosed", err)
	}

	// A new Server on the same directory reuses the cluster.
	s2 := startServer(t, Options{Dir: s.Dir()})
	if got := count(t, connect(t, s2.DSN("app")), "SELECT count(*) FROM t"); got != 2 {
		t.Errorf("reused directory: %d rows, want 2", got)
	}
}

// TestKillRecoversCommittedRows: SIGKILL the server with committed rows and
// an open transaction; after Restart the committed rows are there and the
// uncommitted ones are not.
func TestKillRecoversCommittedRows(t *testing.T) {
	ctx := ctxT(t)
	s := startServer(t, Options{})
	c := connect(t, s.DSN("postgres"))
	if _, err := c.Exec(ctx, "CREATE TABLE t (v int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := c.Exec(ctx, "INSERT INTO t VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	open := connect(t, s.DSN("postgres"))
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t SELECT generate_series(1000, 1999)"); err != nil {
		t.Fatal(err)
	}

	pid := s.PID()
	kids := childrenOf(pid)
	if len(kids) == 0 {
		t.Fatal("the postmaster has no children to kill")
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d still exists after Kill: %v", pid, err)
	}
	for _, k := range kids {
		if k.running() {
			t.Errorf("backend %d still running after Kill", k.pid)
		}
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a query succeeded on a killed server")
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	c2 := connect(t, s.DSN("postgres"))
	if got := count(t, c2, "SELECT count(*) FROM t"); got != 100 {
		t.Errorf("after recovery: %d rows, want the 100 committed", got)
	}
}

// TestRunsAsUnprivilegedUser: as root, the server runs as the server user,
// which owns the data directory.
func TestRunsAsUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the server runs as the calling user")
	}
	s := startServer(t, Options{})
	u, err := user.Lookup(s.run.name)
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(s.PID()) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var uids string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			uids = l
		}
	}
	if f := strings.Fields(uids); len(f) < 3 || f[1] != u.Uid || f[2] != u.Uid {
		t.Errorf("postmaster %q, want uid %s (%s)", uids, u.Uid, u.Username)
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); got != u.Uid {
		t.Errorf("data directory owned by uid %s, want %s", got, u.Uid)
	}
}

func TestDirNotAccessible(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the directory to another user")
	}
	locked := t.TempDir() // 0700, root's
	_, err := Start(ctxT(t), Options{Dir: filepath.Join(locked, "pg"), Logger: testLogger(t)})
	if !errors.Is(err, ErrDirNotAccessible) {
		t.Fatalf("Start in a root-only directory = %v, want ErrDirNotAccessible", err)
	}
}

// TestLongDir: a directory too long for a unix socket path still works.
func TestLongDir(t *testing.T) {
	dir := filepath.Join(testDir(t), strings.Repeat("d", 60), strings.Repeat("e", 60))
	s := startServer(t, Options{Dir: dir})
	if got := count(t, connect(t, s.SocketDSN("postgres")), "SELECT 1"); got != 1 {
		t.Errorf("SELECT 1 = %d", got)
	}
}
