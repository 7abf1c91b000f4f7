package pglocal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// postmaster is one run of the server process, a child of this process.
type postmaster struct {
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // its exit status; read after done is closed
}

// spawn starts the postmaster and waits until postmaster.pid says it is
// ready. On failure the process is gone when spawn returns.
//
// The process is started from a goroutine locked to its OS thread, which
// stays locked until the process has exited: the parent-death signal
// (SIGINT, a fast shutdown) is tied to the thread that forked, so the
// server stops if this process dies without stopping it.
func (s *Server) spawn(ctx context.Context) (*postmaster, error) {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pglocal: open server log: %w", err)
	}
	defer logf.Close()
	if err := s.run.chown(s.logPath); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	cmd := exec.Command(s.bins.Postgres, "-D", s.dataDir)
	s.prepare(cmd)
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // a ^C to our process group is ours, not the server's
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT

	pm := &postmaster{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		pm.pid = cmd.Process.Pid
		started <- nil
		pm.err = cmd.Wait()
		close(pm.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStart, err)
	}
	if err := s.waitReady(ctx, pm); err != nil {
		_ = pm.kill()
		return nil, err
	}
	return pm, nil
}

// waitReady polls postmaster.pid until it names pm and says "ready".
func (s *Server) waitReady(ctx context.Context, pm *postmaster) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	pidFile := filepath.Join(s.dataDir, "postmaster.pid")
	for {
		if b, err := os.ReadFile(pidFile); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.Itoa(pm.pid) && strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-pm.done:
			return fmt.Errorf("%w: postgres exited (%v): %s", ErrStart, pm.err, s.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%w: not ready: %w: %s", ErrStart, ctx.Err(), s.logTail())
		case <-tick.C:
		}
	}
}

// stop asks for a fast shutdown and waits; when ctx ends first it asks
// for an immediate shutdown, and after 5 more seconds kills.
func (pm *postmaster) stop(ctx context.Context) error {
	if err := pm.signal(syscall.SIGINT); err != nil {
		return err
	}
	select {
	case <-pm.done:
		return nil
	case <-ctx.Done():
	}
	_ = pm.signal(syscall.SIGQUIT)
	select {
	case <-pm.done:
	case <-time.After(5 * time.Second):
		if err := pm.kill(); err != nil {
			return err
		}
	}
	return fmt.Errorf("fast shutdown did not finish: %w", ctx.Err())
}

// signal sends sig to the postmaster unless it has exited (and so may no
// longer own its pid).
func (pm *postmaster) signal(sig syscall.Signal) error {
	select {
	case <-pm.done:
		return nil
	default:
	}
	if err := syscall.Kill(pm.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pm.pid, err)
	}
	return nil
}

// kill stops the postmaster (so it forks nothing more), sends SIGKILL to
// its children and to it, and waits until all of them are gone.
func (pm *postmaster) kill() error {
	if err := pm.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	var kids []proc
	select {
	case <-pm.done:
	default:
		kids = childrenOf(pm.pid)
	}
	for _, k := range kids {
		_ = syscall.Kill(k.pid, syscall.SIGKILL)
	}
	if err := pm.signal(syscall.SIGKILL); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	select {
	case <-pm.done:
	case <-time.After(time.Until(deadline)):
		return fmt.Errorf("postmaster %d still running after SIGKILL", pm.pid)
	}
	// The backends were re-parented when the postmaster died; they are
	// gone once they no longer run (a zombie left for init counts as gone).
	for _, k := range kids {
		for k.running() {
			if time.Now().After(deadline) {
				return fmt.Errorf("backend %d still running after SIGKILL", k.pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// proc identifies a process across pid reuse: its pid and start time.
type proc struct {
	pid   int
	start string
}

// running reports whether p still exists and is not a zombie.
func (p proc) running() bool {
	st, ok := readStat(p.pid)
	return ok && st.start == p.start && st.state != "Z" && st.state != "X"
}

type stat struct {
	state, ppid, start string
}

// readStat parses /proc/<pid>/stat: state is field 3, ppid field 4, start
// time field 22 (fields counted after the parenthesised command name).
func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return stat{}, false
	}
	return stat{state: f[0], ppid: f[1], start: f[19]}, true
}

// childrenOf lists the live children of pid.
func childrenOf(pid int) []proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(pid)
	var kids []proc
	for _, e := range ents {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(cpid); ok && st.ppid == want && st.state != "Z" {
			kids = append(kids, proc{pid: cpid, start: st.start})
		}
	}
	return kids
}
