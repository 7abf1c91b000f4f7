package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/lab"
)

func TestLabUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no command", []string{"lab"}, 2, "", "a command is required"},
		{"unknown command", []string{"lab", "sideways"}, 2, "", `unknown command "sideways"`},
		{"up help", []string{"lab", "up", "--help"}, 0, "-regions REGIONS", ""},
		{"up without regions", []string{"lab", "up"}, 2, "", "--regions is required"},
		{"bad delay", []string{"lab", "up", "--regions", "eu,us", "--delay", "eu-us=40"}, 2, "", "missing unit"},
		{"unknown region in delay", []string{"lab", "up", "--regions", "eu,us", "--delay", "eu-ap=4ms"}, 2, "", "unknown region"},
		{"bad region name", []string{"lab", "up", "--regions", "eu-west"}, 2, "", "region name"},
		{"bad delayer", []string{"lab", "up", "--regions", "eu", "--delayer", "wormhole"}, 2, "", "--delayer"},
		{"down with argument", []string{"lab", "down", "now"}, 2, "", `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := stapes(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout, tt.wantStdout)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.wantStderr)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLabUpDown(t *testing.T) {
	if err := lab.Available(); err != nil {
		t.Skipf("skipping: %v (stapes lab needs root; CI runs it as root)", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"lab", "up", "--regions", "eu,us:2", "--delay", "eu-us=40ms"}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stdout.String(), "Press Ctrl-C") {
		select {
		case c := <-code:
			t.Fatalf("stapes lab up ended early with %d: %s %s", c, stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond): // no event for "printed"; poll the output
		}
		if time.Now().After(deadline) {
			t.Fatalf("stapes lab up printed %q in 30s", stdout.String())
		}
	}
	out := stdout.String()
	for _, want := range []string{"us-1", "10.77.2.11", "ip netns exec stlab-", "40ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("stapes lab up output lacks %q:\n%s", want, out)
		}
	}
	id := regexp.MustCompile(`lab (\w+) is up`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no lab id in %q", out)
	}
	if c, list, _ := stapes(t, "lab", "list"); c != 0 || !strings.Contains(list, id[1]) {
		t.Errorf("stapes lab list = %d, %q; want the running lab %s", c, list, id[1])
	}
	if c, down, _ := stapes(t, "lab", "down"); c != 0 || !strings.Contains(down, "lab "+id[1]+" is still running") {
		t.Errorf("stapes lab down = %d, %q; want it to leave the running lab %s", c, down, id[1])
	}

	cancel() // Ctrl-C
	select {
	case c := <-code:
		if c != 0 || !strings.Contains(stdout.String(), "lab "+id[1]+" removed") {
			t.Errorf("stapes lab up after Ctrl-C = %d, %q, %q; want 0 and the lab removed", c, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stapes lab up did not end 30s after Ctrl-C")
	}
	if live, _ := lab.Live(); live[id[1]] != 0 {
		t.Errorf("lab %s still recorded after Ctrl-C", id[1])
	}
}
