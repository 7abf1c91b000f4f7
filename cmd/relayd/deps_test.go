package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDatabaseDriver: relays hold no database credentials and never
// link a Postgres driver; only cmd/controld may.
func TestNoDatabaseDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/stapes-relay/stapes/cmd/relayd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/jackc/", "github.com/lib/pq", "github.com/stapes-relay/stapes/control/pgstore"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("relayd links %s", dep)
			}
		}
	}
}
