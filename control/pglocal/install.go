package pglocal

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
)

// EnsureInstalled returns the server binaries, installing the Debian
// postgresql package first when they are missing, the process is root and
// apt-get is available (it runs `apt-get install -y postgresql`, and
// `apt-get update` before a second attempt). Otherwise a missing
// installation is an error wrapping ErrNotInstalled. The caller decides
// whether installing software is acceptable; Start never installs.
//
// Installing the package may also create and start the distribution's own
// cluster (port 5432); pglocal servers do not use it.
func EnsureInstalled(ctx context.Context, log *slog.Logger) (Binaries, error) {
	if log == nil {
		log = slog.Default()
	}
	b, err := FindBinaries(ctx)
	if err == nil {
		return b, nil
	}
	if os.Geteuid() != 0 {
		return Binaries{}, fmt.Errorf("%w (not root, so not installing it)", err)
	}
	apt, lerr := exec.LookPath("apt-get")
	if lerr != nil {
		return Binaries{}, fmt.Errorf("%w (no apt-get to install it with)", err)
	}
	log.Info("installing the postgresql package", "with", apt)
	install := []string{"install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", "postgresql"}
	if ierr := aptGet(ctx, apt, install...); ierr != nil {
		log.Info("apt-get install failed; updating package lists and retrying", "err", ierr)
		if uerr := aptGet(ctx, apt, "update", "-q", "-o", "DPkg::Lock::Timeout=600"); uerr != nil {
			return Binaries{}, fmt.Errorf("%w: apt-get update: %v", ErrNotInstalled, uerr)
		}
		if ierr := aptGet(ctx, apt, install...); ierr != nil {
			return Binaries{}, fmt.Errorf("%w: apt-get install postgresql: %v", ErrNotInstalled, ierr)
		}
	}
	b, err = FindBinaries(ctx)
	if err != nil {
		return Binaries{}, fmt.Errorf("after installing: %w", err)
	}
	log.Info("installed postgresql", "dir", b.Dir, "version", b.Version)
	return b, nil
}

func aptGet(ctx context.Context, apt string, args ...string) error {
	cmd := exec.CommandContext(ctx, apt, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, tail(out.Bytes(), 2048))
	}
	return nil
}

// tail returns at most the last n bytes of b as a string, starting at a
// line boundary when it can.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}
