package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildBins builds the named commands into dir.
func buildBins(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, n), "github.com/stapes-relay/stapes/cmd/"+n)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", n, err, out)
		}
	}
}

// TestDemo runs `stapes demo` end to end against freshly built binaries:
// the front door must work, with the whole system (private Postgres,
// controld, three relays in three regions with the session placed by
// controld) and in relay-only mode.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds relayd and controld")
	}
	bin := t.TempDir()
	buildBins(t, bin, "relayd", "controld")
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"full", []string{"--controld", filepath.Join(bin, "controld")},
			[]string{"controld API", "relay map (gossip", "demo-eu  eu  alive", "demo-us  us  alive", "demo-ap  ap  alive",
				"clinician probed the relays", "placed by controld on relay demo-", "by clinician",
				"synced to Postgres through controld", "relayd-eu stopped", "relayd-us stopped", "relayd-ap stopped", "postgres stopped"}},
		{"relay-only", []string{"--relay-only"}, []string{"relayd stopped"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// A private Postgres runs as an unprivileged user when we are
			// root; it must be able to reach the demo directory.
			os.Chmod(filepath.Dir(dir), 0o755)
			os.Chmod(dir, 0o755)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			args := append([]string{"demo", "--dir", filepath.Join(dir, "demo"), "--listen", "127.0.0.1:0", "--ops", "127.0.0.1:0",
				"--api", "127.0.0.1:0", "--api-ops", "127.0.0.1:0", "--commands", "3", "--relayd", filepath.Join(bin, "relayd")}, tc.args...)
			if code := run(ctx, args, &stdout, &stderr); code != 0 {
				t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			for _, want := range append([]string{"done: 3 applied, 0 rejected", "APPLIED on the hearing aid", "hearing aid applied"}, tc.want...) {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("demo output lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}
