package storage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// killChildEnv names the directory the child process commits into; it is
// set only in the child started by TestSIGKILL.
const killChildEnv = "STAPES_STORAGE_SIGKILL_DIR"

const (
	killChildSessions = 4
	killChildMaxSeq   = 3000
	killChildMaxTime  = 10 * time.Second
)

// TestSIGKILL re-executes the test binary as a child that commits in a loop
// on a real directory and prints "session seq" after each Commit returns;
// it kills the child with SIGKILL at a random moment, reopens the directory
// and checks that every printed seq is there. (A SIGKILL leaves the page
// cache intact, so this proves the happy path end to end; TestCrashClone and
// TestWALFaults cover lost unsynced data and failed syncs.)
func TestSIGKILL(t *testing.T) {
	if os.Getenv(killChildEnv) != "" {
		t.Skip("running as the child")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			killDelay := time.Duration(5+rng.IntN(200)) * time.Millisecond
			sigkillRound(t, killDelay)
		})
	}
}

func sigkillRound(t *testing.T, killDelay time.Duration) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("StdoutPipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child: %v", err)
	}

	acked := make(map[string]uint64) // highest seq printed per session
	lines := 0
	first := make(chan struct{})
	readDone := make(chan error, 1)
	go func() {
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				// A line cut short by the kill has no newline: ignore it.
				if err == io.EOF {
					err = nil
				}
				readDone <- err
				return
			}
			sess, seqStr, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			seq, perr := strconv.ParseUint(seqStr, 10, 64)
			if !ok || perr != nil {
				continue // test framework output
			}
			if seq > acked[sess] {
				acked[sess] = seq
			}
			if lines++; lines == 1 {
				close(first)
			}
		}
	}()

	select {
	case <-first:
	case err := <-readDone:
		_ = cmd.Wait()
		t.Fatalf("child printed no commit (read: %v); stderr:\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child printed no commit in time; stderr:\n%s", stderr.String())
	}
	// The kill point: a random moment after commits started.
	kill := time.NewTimer(killDelay)
	select {
	case <-kill.C:
		if err := cmd.Process.Kill(); err != nil {
			t.Logf("kill: %v (child already gone)", err)
		}
	case err := <-readDone:
		readDone <- err // child finished its bounded loop before the kill
		kill.Stop()
	}
	if err := <-readDone; err != nil {
		t.Fatalf("reading child output: %v", err)
	}
	waitErr := cmd.Wait()
	t.Logf("child after %v: %v; %d commits printed", killDelay, waitErr, lines)

	s := openStore(t, dir, testOptions(nil))
	ctx := context.Background()
	for i := range killChildSessions {
		sess := fmt.Sprintf("k%d", i)
		head, err := s.Head(ctx, sess)
		if err != nil {
			t.Fatalf("Head(%q): %v", sess, err)
		}
		if head < acked[sess] {
			t.Errorf("session %q: head %d after SIGKILL, child printed seq %d as committed", sess, head, acked[sess])
		}
		checkLog(t, s, sess, head)
	}
}

// TestSIGKILLChild is the child of TestSIGKILL; it does nothing unless
// killChildEnv is set.
func TestSIGKILLChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("helper process for TestSIGKILL")
	}
	s := openStore(t, dir, testOptions(nil))
	ctx, cancel := context.WithTimeout(context.Background(), killChildMaxTime)
	defer cancel()
	var outMu sync.Mutex
	var wg sync.WaitGroup
	for i := range killChildSessions {
		sess := fmt.Sprintf("k%d", i)
		wg.Go(func() {
			for seq := uint64(1); seq <= killChildMaxSeq && ctx.Err() == nil; seq++ {
				if err := s.Commit(ctx, sess, batch(sess, seq, seq), nil); err != nil {
					t.Errorf("Commit(%q, %d): %v", sess, seq, err)
					return
				}
				line := fmt.Appendf(nil, "%s %d\n", sess, seq)
				outMu.Lock()
				_, err := os.Stdout.Write(line) // one write per line: atomic on a pipe
				outMu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}
