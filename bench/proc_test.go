package bench

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestTreeCountsChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	if got := childPids(os.Getpid()); !slices.Contains(got, cmd.Process.Pid) {
		t.Fatalf("childPids = %v, want it to hold %d", got, cmd.Process.Pid)
	}
	u := StartUsage(Proc{Name: "tree", Pid: os.Getpid(), Tree: true})
	if len(u.procs) != 1 {
		t.Fatal("the tree was not readable")
	}
	m := u.Metrics(1)
	if _, ok := m["cpu_tree_pct"]; !ok {
		t.Errorf("metrics %v: want cpu_tree_pct", m)
	}
}
