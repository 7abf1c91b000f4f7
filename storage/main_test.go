package storage

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes its stores; Pebble's goroutines must be gone at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
