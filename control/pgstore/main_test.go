package pgstore

import (
	"os"
	"testing"

	"github.com/stapes-relay/stapes/control/pglocal/pgtest"
	"go.uber.org/goleak"
)

// One Postgres for the whole test binary (pgtest), stopped at the end.
// Every store is closed, so no pool goroutine may be left.
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
