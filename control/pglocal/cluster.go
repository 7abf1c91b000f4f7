package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// confFile is the settings file Start rewrites before every start;
// postgresql.conf includes it.
const confFile = "stapes.conf"

const includeLine = "\n# Added by stapes pglocal: settings rewritten at every start.\ninclude_if_exists = '" + confFile + "'\n"

// hbaConf allows every local user to connect without a password over the
// unix socket (which only the server user and root can open) and over
// 127.0.0.1; nothing else.
const hbaConf = `# Written by stapes pglocal. Local development and tests only.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
`

// superuser is the cluster's superuser role, whoever runs the server.
const superuser = "postgres"

// ensureCluster initialises the cluster in dataDir unless one is there
// already. A data directory without PG_VERSION is a half-finished initdb
// and is removed first.
func (s *Server) ensureCluster(ctx context.Context) error {
	pv, err := os.ReadFile(filepath.Join(s.dataDir, "PG_VERSION"))
	switch {
	case err == nil:
		v, perr := strconv.Atoi(strings.TrimSpace(string(pv)))
		if perr != nil || v != s.bins.Version {
			return fmt.Errorf("%w: %s holds version %q, binaries in %s are %d", ErrVersionMismatch, s.dataDir, strings.TrimSpace(string(pv)), s.bins.Dir, s.bins.Version)
		}
		return s.run.chownTree(s.dataDir)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pglocal: read PG_VERSION: %w", err)
	}
	if err := os.RemoveAll(s.dataDir); err != nil {
		return fmt.Errorf("pglocal: remove unfinished data directory: %w", err)
	}
	args := []string{"-D", s.dataDir, "-U", superuser, "--auth=trust", "--encoding=UTF8", "--locale=C"}
	if s.bins.Version >= 14 {
		args = append(args, "--no-instructions")
	}
	cmd := exec.CommandContext(ctx, s.bins.Initdb, args...)
	s.prepare(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pglocal: initdb: %w: %s", err, tail(out.Bytes(), 2048))
	}
	if err := s.run.writeFile(filepath.Join(s.dataDir, "pg_hba.conf"), []byte(hbaConf)); err != nil {
		return fmt.Errorf("pglocal: write pg_hba.conf: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pglocal: open postgresql.conf: %w", err)
	}
	_, werr := f.WriteString(includeLine)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("pglocal: write postgresql.conf: %w", werr)
	}
	s.log.Info("postgres cluster initialised", "dir", s.dataDir, "version", s.bins.Version)
	return nil
}

// writeConf writes the settings of the next start.
func (s *Server) writeConf() error {
	set := map[string]string{
		"port":                       strconv.Itoa(s.port),
		"listen_addresses":           "127.0.0.1",
		"unix_socket_directories":    s.sockDir,
		"unix_socket_permissions":    "0700",
		"max_connections":            strconv.Itoa(s.opts.MaxConnections),
		"shared_buffers":             s.opts.SharedBuffers,
		"fsync":                      "on",
		"synchronous_commit":         "on",
		"full_page_writes":           "on",
		"timezone":                   "UTC",
		"log_timezone":               "UTC",
		"logging_collector":          "off",
		"log_min_messages":           "warning",
		"log_min_error_statement":    "panic", // statements may carry PHI: never log them
		"log_checkpoints":            "off",
		"dynamic_shared_memory_type": "posix",
	}
	for k, v := range s.opts.Settings {
		set[k] = v
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by stapes pglocal before every start; edits are overwritten.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(set[k], "'", "''"))
	}
	return s.run.writeFile(filepath.Join(s.dataDir, confFile), []byte(b.String()))
}

// prepare sets what every server process gets: a clean environment, the
// server user's identity and the server directory as working directory.
func (s *Server) prepare(cmd *exec.Cmd) {
	cmd.Dir = s.dir
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C",
		"TZ=UTC",
	}
	if s.run.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.run.cred}
	}
}
