package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcStat is one reading of a process's CPU time and memory.
type ProcStat struct {
	At       time.Time
	CPU      time.Duration // user + system time since the process started
	RSSBytes int64         // resident set size now (VmRSS)
	HWMBytes int64         // peak resident set size (VmHWM)
	Threads  int
}

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcStat, error) {
	st := ProcStat{At: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, fmt.Errorf("%w: %d: %v", ErrNoProc, pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields are counted after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, fmt.Errorf("bench: /proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return st, fmt.Errorf("bench: /proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	stt, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("bench: /proc/%d/stat: bad cpu times", pid)
	}
	st.CPU = time.Duration(ut+stt) * time.Second / clockTicks
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, fmt.Errorf("%w: %d: %v", ErrNoProc, pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "VmRSS":
			st.RSSBytes = parseKB(v)
		case "VmHWM":
			st.HWMBytes = parseKB(v)
		case "Threads":
			st.Threads, _ = strconv.Atoi(v)
		}
	}
	return st, nil
}

func parseKB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n * 1024
}

// Proc names a process whose usage is reported.
type Proc struct {
	Name string // metric label: "relayd", "harness", "forwarder"...
	Pid  int
	// Tree adds the CPU time of the process's children (a PostgreSQL
	// postmaster's backends) to its own. A child that exits during the
	// window takes its time with it; one started during it counts whole.
	Tree bool
}

// readUsage reads p, adding its children's CPU time for a Tree.
func readUsage(p Proc) (ProcStat, error) {
	st, err := ReadProc(p.Pid)
	if err != nil || !p.Tree {
		return st, err
	}
	for _, c := range childPids(p.Pid) {
		if cs, err := ReadProc(c); err == nil {
			st.CPU += cs.CPU
		}
	}
	return st, nil
}

// childPids lists the processes whose parent is pid (from /proc/*/stat).
func childPids(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		// Field 4, the parent pid, is the second after the command name.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, c)
			}
		}
	}
	return out
}

// Self is the harness process.
func Self() Proc { return Proc{Name: "harness", Pid: os.Getpid()} }

// Usage measures CPU time used by a set of processes over a window.
type Usage struct {
	procs []Proc
	start []ProcStat
}

// StartUsage takes the first reading of every process; those that cannot
// be read are left out.
func StartUsage(procs ...Proc) *Usage {
	u := &Usage{}
	for _, p := range procs {
		if st, err := readUsage(p); err == nil {
			u.procs = append(u.procs, p)
			u.start = append(u.start, st)
		}
	}
	return u
}

// Metrics takes the second reading and returns, per process,
// cpu_<name>_pct (percent of one core over the window), rss_<name>_kib,
// and, when ops > 0, cpu_<name>_us_per_op.
func (u *Usage) Metrics(ops int) map[string]float64 {
	m := map[string]float64{}
	for i, p := range u.procs {
		end, err := readUsage(p)
		if err != nil {
			continue
		}
		wall := end.At.Sub(u.start[i].At)
		cpu := end.CPU - u.start[i].CPU
		if wall > 0 {
			m["cpu_"+p.Name+"_pct"] = 100 * cpu.Seconds() / wall.Seconds()
		}
		m["rss_"+p.Name+"_kib"] = float64(end.RSSBytes) / 1024
		if ops > 0 {
			m["cpu_"+p.Name+"_us_per_op"] = float64(cpu.Microseconds()) / float64(ops)
		}
	}
	return m
}

// RaiseNoFile raises this process's open-file soft limit to its hard
// limit and returns the new soft limit. Children inherit it.
func RaiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("bench: getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("bench: setrlimit: %w", err)
		}
	}
	return rl.Cur, nil
}
