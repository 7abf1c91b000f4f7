package scenario

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// inProcessRelay is a relay in the test process, configured like relayd
// from the environment's keyring and certificate.
type inProcessRelay struct {
	srv  *relay.Server
	st   *storage.Store
	tcp  net.Listener
	udp  net.PacketConn
	done chan error
}

func (r *inProcessRelay) Addr() string { return r.tcp.Addr().String() }
func (r *inProcessRelay) Procs() []bench.Proc {
	return []bench.Proc{{Name: "server", Pid: bench.Self().Pid}}
}
func (r *inProcessRelay) Close() {
	r.srv.Close()
	<-r.done
	r.tcp.Close()
	r.udp.Close()
	r.st.Close()
}

func startInProcess(e *Env) func(ctx context.Context, spec RelaySpec) (Target, error) {
	return func(ctx context.Context, spec RelaySpec) (Target, error) {
		log := slog.New(slog.DiscardHandler)
		st, err := storage.Open(filepath.Join(e.Dir, e.Session("data")), storage.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		kr, err := token.LoadKeyring(e.Keyring())
		if err != nil {
			return nil, err
		}
		srv, err := relay.New(relay.Config{Store: st, Auth: kr, Logger: log, Delay: spec.Delay})
		if err != nil {
			return nil, err
		}
		tcp, udp, err := relaytest.ListenPair("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		r := &inProcessRelay{srv: srv, st: st, tcp: tcp, udp: udp, done: make(chan error, 1)}
		go func() { r.done <- srv.Serve(tcp, udp, e.ServerTLS()) }()
		return r, nil
	}
}

// The acceptance test of the harness itself: the slow-relay scenario,
// tiny, against in-process relays — a normal one and one slowed by a
// commit delay, side by side in the same repeat against the same
// baselines. Every figure and verdict of the slowed relay must come out
// worse than the normal relay's. It compares the two with each other and
// never asserts an absolute speed.
func TestHarnessTellsSlowRelayFromNormal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"))
	if testing.Short() {
		t.Skip("runs a small load scenario (about 10 s)")
	}
	e, err := NewEnv(t.TempDir(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.StartRelay = startInProcess(e)
	// A delay far above this machine's fsync noise, so that no hiccup of
	// the normal relay can look like the delay.
	const delay = 50 * time.Millisecond
	o := Options{Duration: time.Second, Repeat: 1, Sessions: slowSessions}.WithDefaults()
	res := &bench.ScenarioResult{Name: "slow-relay"}
	if err := runDurable(context.Background(), e, o, res, delay); err != nil {
		t.Fatal(err)
	}
	res.Finish()
	for _, c := range res.Checks {
		if strings.HasPrefix(c.Name, normalPrefix) || c.Goal.Target == 0 {
			continue
		}
		nc, ok := findCheck(res, normalPrefix+c.Name)
		if !ok {
			t.Fatalf("%s: no normal-relay twin", c.Name)
		}
		if !bench.Worse(c, nc) {
			t.Errorf("%s: verdict score slowed %.2f (%s), normal %.2f (%s): want the slowed relay further from the goal",
				c.Name, c.Score, c.Verdict, nc.Score, nc.Verdict)
		}
	}
	worse, total := compareSlowRelay([]*bench.ScenarioResult{res})
	if total < 4 || worse != total {
		t.Errorf("the harness saw the slowed relay as worse in %d of %d figures, want all of at least 4", worse, total)
		for _, n := range res.Notes {
			t.Log(n)
		}
	}
	if c, ok := findCheck(res, "slowed vs normal relay, p50, 1 session(s)"); !ok || !(c.Value.Median > 1) {
		t.Errorf("slowed/normal p50 ratio: %+v, want above 1", c.Value)
	}
}
