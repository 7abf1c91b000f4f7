package gossip

import (
	"testing"

	"go.uber.org/goleak"
)

// A probe memberlist started before Close runs to the end of its probe
// interval (stretched up to 8× by Lifeguard on a loaded machine) before it
// notices the shutdown; it is memberlist's own and ends on its own (see
// Cluster.Close). Everything else must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
