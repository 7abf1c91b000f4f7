package scenario

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
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

// The acceptance test of the harness itself: the same tiny durable-commit
// scenario against a normal relay and against one slowed by a commit
// delay; the harness's figures and verdicts for the slowed one must come
// out worse. It compares the two runs with each other and never asserts
// an absolute speed.
func TestHarnessTellsSlowRelayFromNormal(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"))
	if testing.Short() {
		t.Skip("runs two small load scenarios (about 12 s)")
	}
	e, err := NewEnv(t.TempDir(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.StartRelay = startInProcess(e)
	// A delay well above this machine's fsync noise, so a p99 of the normal
	// relay cannot come out above the slowed one's by chance.
	const delay = 20 * time.Millisecond
	o := Options{Duration: time.Second, Repeat: 1, Sessions: []int{1}}.WithDefaults()
	ctx := context.Background()
	normal := &bench.ScenarioResult{Name: "durable-commit"}
	if err := runDurable(ctx, e, o, normal, 0); err != nil {
		t.Fatal(err)
	}
	normal.Finish()
	slow := &bench.ScenarioResult{Name: "slow-relay"}
	if err := runDurable(ctx, e, o, slow, delay); err != nil {
		t.Fatal(err)
	}
	slow.Finish()

	compared := 0
	for _, sc := range slow.Checks {
		var nc *bench.Check
		for i := range normal.Checks {
			if normal.Checks[i].Name == sc.Name {
				nc = &normal.Checks[i]
			}
		}
		if nc == nil || !sc.Value.Valid() || !nc.Value.Valid() {
			t.Errorf("%s: no data (normal %+v, slowed %+v)", sc.Name, nc, sc.Value)
			continue
		}
		compared++
		if !SlowerThan(sc, *nc) {
			t.Errorf("%s: slowed relay %s (%s), normal %s (%s): the harness did not see the slow relay as worse",
				sc.Name, describe(sc), sc.Verdict, describe(*nc), nc.Verdict)
		}
		if sc.Goal.Target != 0 && !bench.Worse(sc, *nc) {
			t.Errorf("%s: verdict score slowed %.2f, normal %.2f: want the slowed one further from the goal", sc.Name, sc.Score, nc.Score)
		}
	}
	if compared < 3 {
		t.Errorf("compared %d figures, want at least 3", compared)
	}
	compareSlowRelay([]*bench.ScenarioResult{normal, slow})
	if n := len(slow.Notes); n == 0 {
		t.Error("slow-relay got no comparison notes")
	}
}
