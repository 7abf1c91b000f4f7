package pglocal

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// runAs is the identity the server's processes run with.
type runAs struct {
	name     string
	uid, gid uint32
	cred     *syscall.Credential // nil: the calling process's own identity
}

// defaultUser is the system user a root process runs the server as.
const defaultUser = "stapes-pg"

// fallbackUser is used when defaultUser does not exist and cannot be created.
const fallbackUser = "nobody"

// resolveUser returns who runs the server: the calling process itself
// unless it is root; then the named user, created with useradd (a system
// user with its own group, no home, no login shell) if missing and the
// name is the default; failing that, nobody.
func resolveUser(ctx context.Context, log *slog.Logger, name string) (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{name: "", uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
	}
	u, err := user.Lookup(name)
	if err != nil && name == defaultUser {
		if cerr := createUser(ctx, name); cerr != nil {
			log.Warn("cannot create the server user; falling back", "user", name, "fallback", fallbackUser, "err", cerr)
		}
		u, err = user.Lookup(name)
		if err != nil {
			u, err = user.Lookup(fallbackUser)
		}
	}
	if err != nil {
		return runAs{}, fmt.Errorf("%w: server user %s: %v", ErrInvalidOptions, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return runAs{}, fmt.Errorf("%w: server user %s must be an unprivileged user", ErrInvalidOptions, u.Username)
	}
	return runAs{
		name: u.Username,
		uid:  uint32(uid),
		gid:  uint32(gid),
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
	}, nil
}

func createUser(ctx context.Context, name string) error {
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		return err
	}
	shell := "/usr/sbin/nologin"
	if _, err := os.Stat(shell); err != nil {
		shell = "/bin/false"
	}
	out, err := exec.CommandContext(ctx, useradd, "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", shell, "--comment", "stapes local PostgreSQL", name).CombinedOutput()
	if err != nil {
		// Another process may have created it meanwhile; the caller looks
		// it up again either way.
		return fmt.Errorf("useradd %s: %w: %s", name, err, tail(out, 512))
	}
	return nil
}

// checkReachable reports whether every existing ancestor of dir is
// searchable by r (only supplementary groups are not considered).
func (r runAs) checkReachable(dir string) error {
	if r.cred == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil && !r.can(fi, 1) {
			return fmt.Errorf("%w: user %s cannot enter %s (mode %v)", ErrDirNotAccessible, r.name, p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// can reports whether r has the permission bit (4 read, 2 write, 1
// execute/search) on a file.
func (r runAs) can(fi fs.FileInfo, bit uint32) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := uint32(fi.Mode().Perm())
	switch {
	case st.Uid == r.uid:
		return perm&(bit<<6) != 0
	case st.Gid == r.gid:
		return perm&(bit<<3) != 0
	default:
		return perm&bit != 0
	}
}

// chown gives path to r when the server runs as another user.
func (r runAs) chown(path string) error {
	if r.cred == nil {
		return nil
	}
	return os.Lchown(path, int(r.uid), int(r.gid))
}

// chownTree gives every file under root to r if root's owner is not r
// already (a directory reused after the server user changed).
func (r runAs) chownTree(root string) error {
	if r.cred == nil {
		return nil
	}
	fi, err := os.Stat(root)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == r.uid && st.Gid == r.gid {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return r.chown(p)
	})
}

// writeFile writes data to path (mode 0600) owned by r.
func (r runAs) writeFile(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	return r.chown(path)
}
