package controlserver

import (
	"os"
	"testing"

	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"go.uber.org/goleak"
)

// One Postgres for the test binary (pgtest), stopped at the end; then no
// goroutine may be left (pools, HTTP servers and clients, relays).
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			println(err.Error())
			code = 1
		}
	}
	os.Exit(code)
}
