package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ownerDir holds one file per lab, named by its id, holding the owner's
// pid and start time. It is written before a lab creates anything and
// removed after everything else, so a namespace named stlab-<id>-... with
// no owner file is an orphan.
const ownerDir = "/run/stapes-lab"

// claimID reserves a lab id (name, or a random one) by creating its owner
// file.
func claimID(name string) (string, error) {
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return "", err
	}
	st, err := startTime(os.Getpid())
	if err != nil {
		return "", err
	}
	record := fmt.Sprintf("%d %d\n", os.Getpid(), st)
	for range 10 {
		id := name
		if id == "" {
			id = newID()
		}
		f, err := os.OpenFile(filepath.Join(ownerDir, id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			if name != "" {
				return "", fmt.Errorf("%w: lab %q (%s)", ErrExists, name, filepath.Join(ownerDir, id))
			}
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.WriteString(record)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
			return "", err
		}
		// A namespace left by a crashed lab of the same id would be taken
		// for ours; a random id makes that unlikely, a chosen one does not.
		if left, _ := listNetns(netnsPrefix + id + "-"); len(left) > 0 {
			os.Remove(f.Name())
			return "", fmt.Errorf("%w: namespaces of a lab %q are left (%s); run CleanupStale (stapes lab down)", ErrExists, id, strings.Join(left, ", "))
		}
		return id, nil
	}
	return "", fmt.Errorf("%w: no free lab id after 10 tries", ErrExists)
}

// owner reads a lab's owner file.
func owner(id string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(filepath.Join(ownerDir, id))
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s: malformed owner record", filepath.Join(ownerDir, id))
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil {
		return 0, 0, err
	}
	start, err = strconv.ParseUint(f[1], 10, 64)
	return pid, start, err
}

// ownerAlive reports whether the process that created lab id still runs.
// An unreadable or malformed record counts as dead.
func ownerAlive(id string) bool {
	pid, start, err := owner(id)
	if err != nil {
		return false
	}
	st, err := startTime(pid)
	return err == nil && st == start
}

// removeLab kills the processes inside lab id's namespaces, deletes the
// namespaces (their links go with them) and then the owner file.
func removeLab(ctx context.Context, id string) error {
	names, err := listNetns(netnsPrefix + id + "-")
	if err != nil {
		return err
	}
	var errs []error
	var pids []int
	for _, ns := range names {
		pids = append(pids, netnsPids(ns)...)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	if len(names) > 0 {
		lines := make([]string, len(names))
		for i, ns := range names {
			lines[i] = "netns del " + ns
		}
		// -force: go on past a namespace that is already gone.
		if err := run(ctx, strings.Join(lines, "\n")+"\n", "ip", "-force", "-batch", "-"); err != nil {
			if left, _ := listNetns(netnsPrefix + id + "-"); len(left) > 0 {
				errs = append(errs, err)
			}
		}
	}
	// A killed process leaves its namespace (and so the links in it) only
	// once it has exited; wait for that, within bounds.
	for i := 0; i < 200 && len(pids) > 0; i++ {
		pids = slices.DeleteFunc(pids, func(pid int) bool { return syscall.Kill(pid, 0) != nil || zombie(pid) })
		if len(pids) > 0 {
			select {
			case <-ctx.Done():
				i = 200
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if len(pids) > 0 {
		errs = append(errs, fmt.Errorf("processes %v still running in lab %s", pids, id))
	}
	if err := os.Remove(filepath.Join(ownerDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// zombie reports whether pid has exited but not been waited for (a zombie
// holds no namespace).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// CleanupStale removes every lab whose creating process has ended (and
// any namespace of ours with no owner record at all), as Close would
// have. It returns the ids of the labs it removed. Labs of live processes
// are left alone.
func CleanupStale(ctx context.Context) ([]string, error) {
	ids := map[string]bool{}
	ents, err := os.ReadDir(ownerDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		ids[e.Name()] = true
	}
	names, err := listNetns(netnsPrefix)
	if err != nil {
		return nil, err
	}
	for _, ns := range names {
		if id, _, ok := parseNetns(ns); ok {
			ids[id] = true
		}
	}
	var removed []string
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if ownerAlive(id) {
			continue
		}
		if err := removeLab(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", id, err))
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// Live returns the ids and owner pids of the labs whose owners still run.
func Live() (map[string]int, error) {
	ents, err := os.ReadDir(ownerDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	live := map[string]int{}
	for _, e := range ents {
		if ownerAlive(e.Name()) {
			pid, _, _ := owner(e.Name())
			live[e.Name()] = pid
		}
	}
	return live, nil
}
