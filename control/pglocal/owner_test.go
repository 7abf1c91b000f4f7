package pglocal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const helperEnv = "STAPES_PGLOCAL_OWNER_DIR"

// TestServerStopsWithOwner: a test binary killed with SIGKILL (a test
// timeout, ^C twice) takes its server down with it.
func TestServerStopsWithOwner(t *testing.T) {
	if dir := os.Getenv(helperEnv); dir != "" {
		s, err := Start(context.Background(), Options{Dir: dir, Logger: testLogger(t)})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("pid", s.PID())
		time.Sleep(time.Hour) // until killed
		return
	}
	ctx := ctxT(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestServerStopsWithOwner$")
	cmd.Env = append(os.Environ(), helperEnv+"="+testDir(t))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "pid "); ok {
			pid, _ = strconv.Atoi(p)
			break
		}
		t.Log(sc.Text())
	}
	if pid == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the helper did not start a server")
	}
	st, _ := readStat(pid)
	pm := proc{pid: pid, start: st.start}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for pm.running() {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still running a minute after its owner was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
