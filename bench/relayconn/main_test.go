package relayconn

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines after every test and its cleanups
// (relaytest stops its relay in a cleanup).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"))
}
