package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// ipBatch runs ip, in namespace ns unless ns is empty, with the commands
// in lines (`ip -batch -`), stopping at the first that fails.
func ipBatch(ctx context.Context, ns string, lines ...string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	return run(ctx, strings.Join(lines, "\n")+"\n", "ip", args...)
}

// run runs a command with stdin, returning its stderr in the error.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// listNetns returns the names of the named network namespaces with prefix.
func listNetns(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// inNetns runs f on an OS thread that has joined the named network
// namespace, and returns f's error. The thread goes back to its namespace
// afterwards; if it cannot, it is never unlocked, so Go ends it rather
// than run other goroutines in the wrong namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(netnsDir + "/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("%w: %v", ErrUnknownHost, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread exits with this goroutine.
			errc <- fmt.Errorf("lab: back from netns %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsPids returns the processes whose network namespace is the named
// one (what `ip netns pids` prints), leaving out this process.
func netnsPids(name string) []int {
	var target unix.Stat_t
	if err := unix.Stat(netnsDir+"/"+name, &target); err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == target.Dev && st.Ino == target.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/<pid>/stat), which with the pid names a process
// even after its pid is reused.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after it start past the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Available reports whether this machine can run a lab: root, the ip
// binary, network namespaces and TUN devices. The error wraps
// ErrUnavailable and says what is missing, for t.Skip.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), running as uid %d", ErrUnavailable, os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: no ip binary (iproute2): %v", ErrUnavailable, err)
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return fmt.Errorf("%w: no tc binary (iproute2): %v", ErrUnavailable, err)
	}
	// Try a throwaway namespace on a thread that then ends, so nothing is
	// left behind: a new network namespace and a TUN device inside it.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("%w: cannot create a network namespace: %v", ErrUnavailable, err)
			return
		}
		f, err := openTUN("stapesprobe0")
		if err != nil {
			errc <- fmt.Errorf("%w: cannot create a TUN device: %v", ErrUnavailable, err)
			return
		}
		f.Close()
		errc <- nil
	}()
	return <-errc
}
