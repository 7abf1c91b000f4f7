package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `stapes demo` end to end against a freshly built relayd:
// the front door must work.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "relayd")
	build := exec.Command("go", "build", "-o", bin, "github.com/stapes-relay/stapes/cmd/relayd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building relayd: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"demo", "--dir", filepath.Join(dir, "demo"), "--listen", "127.0.0.1:0", "--ops", "127.0.0.1:0",
		"--commands", "3", "--relayd", bin}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"done: 3 applied, 0 rejected", "APPLIED on the hearing aid", "hearing aid applied", "relayd drained and stopped"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout.String())
		}
	}
}
