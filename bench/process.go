package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Command describes a server the harness starts as a subprocess.
type Command struct {
	Name string   // short name for metrics and logs ("relayd")
	Path string   // executable
	Args []string //
	// Log receives the process's stdout and stderr. Default: discarded.
	Log io.Writer
	// Ready is called with every output line until it returns ok; its
	// result is the process's address. Nil: ready at once.
	Ready func(line string) (addr string, ok bool)
	// ReadyTimeout bounds the wait for Ready. Default 20s.
	ReadyTimeout time.Duration
}

// Process is a running subprocess. Stop kills it by pid.
type Process struct {
	Name string
	Pid  int
	Addr string // from Command.Ready

	cmd      *exec.Cmd
	done     chan struct{} // closed when Wait returned
	waitErr  error
	pipes    sync.WaitGroup
	stopOnce sync.Once
}

// Proc returns p as a process to sample.
func (p *Process) Proc() Proc { return Proc{Name: p.Name, Pid: p.Pid} }

// StartProcess starts c and waits until it is ready. The process is killed
// when ctx is cancelled, when the harness dies (parent-death signal), or
// by Stop.
func StartProcess(ctx context.Context, c Command) (*Process, error) {
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 20 * time.Second
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", c.Name, err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("bench: start %s: %w", c.Name, err)
	}
	pw.Close()
	p := &Process{Name: c.Name, Pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	ready := make(chan string, 1)
	check := c.Ready
	if check == nil {
		ready <- ""
	}
	p.pipes.Go(func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(c.Log, line)
			if check != nil {
				if addr, ok := check(line); ok {
					ready <- addr
					check = nil
				}
			}
		}
	})
	t := time.NewTimer(c.ReadyTimeout)
	defer t.Stop()
	select {
	case p.Addr = <-ready:
		return p, nil
	case <-p.done:
		p.Stop()
		return nil, fmt.Errorf("bench: %s exited before it was ready: %v (see its log)", c.Name, p.waitErr)
	case <-t.C:
		p.Stop()
		return nil, fmt.Errorf("bench: %s not ready after %v (see its log)", c.Name, c.ReadyTimeout)
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

// Stop kills the process by its pid and waits for it and its output. It
// is idempotent.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
		default:
			if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				_ = err // already gone
			}
		}
		<-p.done
		p.pipes.Wait()
	})
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
