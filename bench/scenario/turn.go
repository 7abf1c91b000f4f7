package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/baseline"
	"github.com/stapes-relay/stapes/turn"
)

// The turn scenario's load.
const (
	turnAllocs   = 64  // allocations (clients), each with one channel to a peer
	turnPeers    = 4   // plain UDP peer sockets the allocations send to
	turnPayload  = 500 // bytes of payload per packet
	turnSetupers = 8   // concurrent clients in the allocation-setup run
	turnDrain    = 300 * time.Millisecond
)

// turnRates are the offered loads (relayed packets/s, client→peer).
var turnRates = []float64{10_000, 40_000, 80_000, 160_000}

func init() {
	register(&Scenario{
		Name:  "turn",
		Title: "TURN relaying: stapes TURN (relayd) vs coturn vs pion/turn",
		Summary: fmt.Sprintf("Three TURN servers, each its own process on loopback with the same REST shared secret: relayd "+
			"with --turn-listen (stapes TURN, one SO_REUSEPORT socket per core), Debian coturn's turnserver (--relay-threads "+
			"= cores) and an unmodified pion/turn/v5 server (one socket, as in pion's examples). The same Go load tool "+
			"drives each: %d clients allocate and bind a channel to one of %d plain UDP peers (allocation setup rate: %d "+
			"clients at a time), then send %d-byte ChannelData open-loop at each offered rate (packets/s, spread evenly "+
			"over the clients) for the run's duration; the peers count what arrives. Loss = 1 − received/sent after a %v "+
			"drain; CPU per packet is the server process's CPU time over the run divided by packets delivered. The load "+
			"tool shares the 2 cores with the server, the same for all three.", turnAllocs, turnPeers, turnSetupers, turnPayload, turnDrain),
		Default: true,
		Plan: func(o Options) time.Duration {
			return time.Duration(o.Repeat*3) * (time.Duration(len(o.rates(turnRates)))*(o.Duration+time.Second) + 3*time.Second)
		},
		Run: runTURN,
	})
}

// turnServer is one server under test.
type turnServer struct {
	id, system string
	ours       bool
	addr       string
	procs      []bench.Proc
	err        error // could not start: its runs record the error
}

func runTURN(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
	creds := &turn.Credentials{Secrets: [][]byte{[]byte(baseline.TURNSecret)}}
	done := step(e, "turn: start relayd, coturn, pion/turn", 5*time.Second)
	servers := []*turnServer{
		startStapesTURN(ctx, e),
		startCoturn(ctx, e),
		startPionTURN(ctx, e),
	}
	sink := startSink(ctx, e)
	done()
	rates := o.rates(turnRates)
	for rep := range o.Repeat {
		for _, s := range servers {
			setup := res.AddRun(s.id+"-setup", s.system, fmt.Sprintf("%d allocations + channel binds, %d at a time", turnAllocs, turnSetupers), s.ours)
			if s.err != nil {
				setup.Add(nil, s.err)
				for _, r := range rates {
					res.AddRun(s.id+"-"+rateLabel(r), s.system, turnLoadLabel(r), s.ours).Add(nil, s.err)
				}
				continue
			}
			d := step(e, fmt.Sprintf("turn %s setup r%d/%d", s.id, rep+1, o.Repeat), 2*time.Second)
			l, m, err := newTURNLoad(ctx, s.addr, creds, e.Session("turn-"+s.id))
			d()
			setup.Add(m, err)
			if err != nil {
				if errCanceled(ctx, err) {
					return err
				}
				for _, r := range rates {
					res.AddRun(s.id+"-"+rateLabel(r), s.system, turnLoadLabel(r), s.ours).Add(nil, err)
				}
				continue
			}
			for _, r := range rates {
				run := res.AddRun(s.id+"-"+rateLabel(r), s.system, turnLoadLabel(r), s.ours)
				if err := measured(ctx, e, run, fmt.Sprintf("turn %s %s/s r%d/%d", s.id, rateLabel(r), rep+1, o.Repeat), o.Duration+time.Second,
					func() (map[string]float64, error) { return l.run(ctx, r, o.Duration, s.procs) }); err != nil {
					l.Close()
					return err
				}
			}
			l.Close()
		}
		if err := runSinks(ctx, e, o, sink, rates, rep, res); err != nil {
			return err
		}
	}
	turnChecks(res, rates)
	res.Notes = append(res.Notes,
		"delivered_pct is received/sent×100; loss is its complement. A server that falls behind loses packets in its socket buffers (all three get the same buffers the kernel grants them; stapes asks for 4 MiB).",
		"CPU 'server' is the TURN server process (relayd, turnserver, or `stapes bench _serve pion-turn`); 'harness' is the load tool.",
		"sink-* is the single-socket Go packet sink (`stapes bench _serve udp-sink`): the same datagrams straight to one socket read by one goroutine and dropped. Issue 7's sustained-forwarding goal (≥ 0.8× its packets per core, < 0.1% loss) is CPU per packet ≤ 1.25× the sink's at the highest load; at lower loads CPU per packet is mostly the cost of waking up for each packet, and is shown without a goal.",
		"stapes relays ChannelData on its own fast path (no per-packet allocation); coturn and pion relay through their general paths.")
	return nil
}

func turnLoadLabel(r float64) string {
	return fmt.Sprintf("%s packets/s of %d B ChannelData over %d allocations", rateLabel(r), turnPayload, turnAllocs)
}

func turnChecks(res *bench.ScenarioResult, rates []float64) {
	for _, r := range rates {
		rl := rateLabel(r)
		res.Checks = append(res.Checks,
			bench.Check{Name: "@" + rl + "/s: delivered vs coturn", Metric: "delivered_pct", Ours: "stapes-" + rl, Baseline: "coturn-" + rl,
				Goal: bench.Goal{Op: ">=", Target: 0.999, Unit: "×"}},
			bench.Check{Name: "@" + rl + "/s: CPU per packet vs coturn", Metric: "cpu_server_us_per_op", Ours: "stapes-" + rl, Baseline: "coturn-" + rl,
				Goal: bench.Goal{Op: "<=", Target: 1, Unit: "×"}},
			bench.Check{Name: "@" + rl + "/s: delivered vs pion/turn", Metric: "delivered_pct", Ours: "stapes-" + rl, Baseline: "pion-" + rl},
			bench.Check{Name: "@" + rl + "/s: CPU per packet vs pion/turn", Metric: "cpu_server_us_per_op", Ours: "stapes-" + rl, Baseline: "pion-" + rl},
		)
	}
	top := rateLabel(rates[len(rates)-1])
	for _, r := range rates {
		rl := rateLabel(r)
		// Issue 7: sustained forwarding ≥ 0.8× the sink's packets per
		// core ("about 170k packets/s per core here": a capacity), i.e.
		// CPU per packet ≤ 1.25× the sink's, with < 0.1% loss — judged at
		// the highest load, the sustained one. Below it both mostly wait
		// for packets and CPU per packet is the cost of a wake-up: shown,
		// not judged.
		var cpuGoal, lossGoal bench.Goal
		name := "@" + rl + "/s"
		if rl == top {
			cpuGoal = bench.Goal{Op: "<=", Target: 1.25, Unit: "×"}
			lossGoal = bench.Goal{Op: ">=", Target: 0.999, Unit: "×"}
			name += " (sustained)"
		}
		res.Checks = append(res.Checks,
			bench.Check{Name: name + ": CPU per packet vs the Go packet sink", Metric: "cpu_server_us_per_op", Ours: "stapes-" + rl, Baseline: "sink-" + rl, Goal: cpuGoal},
			bench.Check{Name: name + ": delivered vs the Go packet sink", Metric: "delivered_pct", Ours: "stapes-" + rl, Baseline: "sink-" + rl, Goal: lossGoal},
		)
	}
	res.Checks = append(res.Checks,
		bench.Check{Name: "@" + top + "/s: packets/s relayed vs coturn", Metric: "throughput_per_s", Ours: "stapes-" + top, Baseline: "coturn-" + top,
			Goal: bench.Goal{Op: ">=", Target: 1, Unit: "×"}},
		bench.Check{Name: "allocation setups/s vs coturn", Metric: "setups_per_s", Ours: "stapes-setup", Baseline: "coturn-setup"},
		bench.Check{Name: "allocation setups/s vs pion/turn", Metric: "setups_per_s", Ours: "stapes-setup", Baseline: "pion-setup"},
	)
}

// turnLoad is one server's clients and peers.
type turnLoad struct {
	clients []*turnLoadClient
	peers   []*net.UDPConn
	recv    atomic.Int64
	bytes   atomic.Int64
	wg      sync.WaitGroup
	stop    chan struct{}
}

// newTURNLoad starts the peers and sets up the allocations, measuring the
// setup rate.
func newTURNLoad(ctx context.Context, server string, creds *turn.Credentials, session string) (*turnLoad, map[string]float64, error) {
	l := &turnLoad{stop: make(chan struct{})}
	for range turnPeers {
		pcs, err := turn.ListenUDP(ctx, "udp4", "127.0.0.2:0", 1, 8<<20)
		if err != nil {
			l.Close()
			return nil, nil, err
		}
		l.peers = append(l.peers, pcs[0].(*net.UDPConn))
	}
	user, pass, _, err := creds.Mint(session, time.Hour)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	l.clients = make([]*turnLoadClient, turnAllocs)
	start := time.Now()
	errs := make(chan error, turnAllocs)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range turnSetupers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= turnAllocs || ctx.Err() != nil {
					return
				}
				c, err := dialTURNLoad(ctx, server, user, pass, turn.DefaultRealm, turnPayload)
				if err == nil {
					l.clients[i] = c
					peer := netip.MustParseAddrPort(l.peers[i%turnPeers].LocalAddr().String())
					err = c.allocate(peer)
				}
				if err != nil {
					errs <- fmt.Errorf("allocation %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		l.Close()
		return nil, nil, err
	}
	for _, p := range l.peers {
		l.wg.Add(1)
		go l.count(p)
	}
	return l, map[string]float64{"setups_per_s": float64(turnAllocs) / elapsed.Seconds()}, nil
}

// count reads a peer socket until stop, counting packets and bytes.
func (l *turnLoad) count(p *net.UDPConn) {
	defer l.wg.Done()
	buf := make([]byte, 2048)
	for {
		_ = p.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := p.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-l.stop:
				return
			default:
				continue
			}
		}
		l.recv.Add(1)
		l.bytes.Add(int64(n))
	}
}

// run offers rate packets/s for d and returns the figures.
func (l *turnLoad) run(ctx context.Context, rate float64, d time.Duration, procs []bench.Proc) (map[string]float64, error) {
	r0, b0 := l.recv.Load(), l.bytes.Load()
	u := bench.StartUsage(append(procs, bench.Self())...)
	n, elapsed, err := offerPaced(ctx, rate, d, len(l.clients), func(i int) error { return l.clients[i].send() })
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("turn: nothing sent")
	}
	return deliveryMetrics(u, l.recv.Load()-r0, n, l.bytes.Load()-b0, elapsed), nil
}

// offerPaced offers rate packets/s for d from up to two sender goroutines,
// each taking its share of n targets round robin (send(i) sends one
// packet to target i), then waits turnDrain for the last ones to arrive.
// It returns how many sends succeeded and how long the sending took.
func offerPaced(ctx context.Context, rate float64, d time.Duration, n int, send func(i int) error) (sent int64, elapsed time.Duration, err error) {
	senders := min(runtime.GOMAXPROCS(0), 2)
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for s := range senders {
		wg.Go(func() {
			lo, hi := s*n/senders, (s+1)*n/senders
			if lo == hi {
				return // fewer targets than senders
			}
			per := rate / float64(senders) / 1000 // packets per millisecond
			owed, k := 0.0, lo
			for tick := 1; ctx.Err() == nil && time.Since(start) < d; tick++ {
				owed += per
				for ; owed >= 1; owed-- {
					if send(k) == nil {
						ok.Add(1)
					}
					if k++; k == hi {
						k = lo
					}
				}
				if w := time.Until(start.Add(time.Duration(tick) * time.Millisecond)); w > 0 {
					time.Sleep(w)
				}
			}
		})
	}
	wg.Wait()
	elapsed = time.Since(start)
	t := time.NewTimer(turnDrain)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return 0, 0, ctx.Err()
	}
	return ok.Load(), elapsed, nil
}

// deliveryMetrics are a paced run's figures: the CPU usage since u, and
// recv of sent packets (bytes of them) delivered in elapsed.
func deliveryMetrics(u *bench.Usage, recv, sent, bytes int64, elapsed time.Duration) map[string]float64 {
	m := u.Metrics(int(recv))
	m["throughput_per_s"] = float64(recv) / elapsed.Seconds()
	m["offered_per_s"] = float64(sent) / elapsed.Seconds()
	m["delivered_pct"] = 100 * float64(min(recv, sent)) / float64(sent)
	m["loss_pct"] = 100 - m["delivered_pct"]
	m["mbit_s"] = float64(bytes) * 8 / elapsed.Seconds() / 1e6
	return m
}

func (l *turnLoad) Close() {
	close(l.stop)
	for _, c := range l.clients {
		if c != nil {
			c.Close()
		}
	}
	l.wg.Wait()
	for _, p := range l.peers {
		p.Close()
	}
}

// startStapesTURN runs relayd with TURN on loopback (no other limits than
// the defaults except the ones the load would trip: quotas, bandwidth cap,
// the per-address unauthenticated rate).
func startStapesTURN(ctx context.Context, e *Env) *turnServer {
	s := &turnServer{id: "stapes", system: "stapes TURN (relayd --turn-listen)", ours: true}
	secretFile := filepath.Join(e.Dir, "turn-secret")
	if s.err = os.WriteFile(secretFile, []byte(baseline.TURNSecret+"\n"), 0o600); s.err != nil {
		return s
	}
	log, err := e.logFile("relayd-turn")
	if err != nil {
		s.err = err
		return s
	}
	args := []string{"--listen", "127.0.0.1:0", "--ops", "127.0.0.1:0", "--data", filepath.Join(e.Dir, "data-"+e.Session("turn")),
		"--keyring", e.keyring, "--relay-id", "bench", "--plain", "--log-level", "info",
		"--turn-listen", "127.0.0.1:0", "--turn-secret-file", secretFile, "--turn-allow-peers", "127.0.0.0/8",
		"--turn-udp-sockets", strconv.Itoa(runtime.NumCPU()), "--turn-bandwidth", "-1",
		"--turn-max-allocations", "100000", "--turn-allocations-per-session", "100000", "--turn-allocations-per-user", "100000",
		"--turn-unauth-rate", "1000000", "--turn-unauth-rate-per-ip", "1000000"}
	p, err := bench.StartProcess(ctx, bench.Command{Name: "relayd", Path: e.Relayd, Args: args, Log: log,
		Ready: func(line string) (string, bool) {
			if !strings.Contains(line, "turn ready") {
				return "", false
			}
			var v struct {
				Listen string `json:"listen"`
			}
			if json.Unmarshal([]byte(line), &v) != nil || v.Listen == "" {
				return "", false
			}
			return v.Listen, true
		}})
	if err != nil {
		log.Close()
		s.err = err
		return s
	}
	e.track(func() { p.Stop(); log.Close() })
	s.addr, s.procs = p.Addr, []bench.Proc{{Name: "server", Pid: p.Pid}}
	return s
}

// startCoturn runs Debian coturn's turnserver on loopback with a config on
// the command line: REST secret, loopback peers allowed, no TLS/CLI, its
// files in the scratch directory. Killed by pid like every server.
func startCoturn(ctx context.Context, e *Env) *turnServer {
	s := &turnServer{id: "coturn", system: "coturn turnserver " + coturnVersion()}
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		s.err = errors.New("turnserver not installed (Debian package coturn)")
		return s
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		s.err = err
		return s
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	dir := filepath.Join(e.Dir, "coturn-"+e.Session("c"))
	if s.err = os.MkdirAll(dir, 0o755); s.err != nil {
		return s
	}
	log, err := e.logFile("coturn")
	if err != nil {
		s.err = err
		return s
	}
	args := []string{"-n", "--listening-ip=127.0.0.1", "--listening-port=" + strconv.Itoa(port), "--relay-ip=127.0.0.1",
		"--use-auth-secret", "--static-auth-secret=" + baseline.TURNSecret, "--realm=" + baseline.TURNRealm,
		"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--relay-threads=" + strconv.Itoa(runtime.NumCPU()),
		"--pidfile=" + filepath.Join(dir, "turnserver.pid"), "--userdb=" + filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log", "--no-software-attribute", "--no-rfc5780"}
	p, err := bench.StartProcess(ctx, bench.Command{Name: "turnserver", Path: bin, Args: args, Log: log})
	if err != nil {
		log.Close()
		s.err = err
		return s
	}
	e.track(func() { p.Stop(); log.Close() })
	s.addr, s.procs = net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), []bench.Proc{{Name: "server", Pid: p.Pid}}
	s.err = waitSTUN(ctx, s.addr, 10*time.Second)
	return s
}

func coturnVersion() string {
	out, err := exec.Command("turnserver", "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// startPionTURN runs `stapes bench _serve pion-turn`.
func startPionTURN(ctx context.Context, e *Env) *turnServer {
	s := &turnServer{id: "pion", system: "pion/turn/v5 server, unmodified (one socket)"}
	p, err := e.StartBaseline(ctx, "pion-turn")
	if err != nil {
		s.err = err
		return s
	}
	s.addr, s.procs = p.Addr, []bench.Proc{p.Proc()}
	return s
}

// waitSTUN waits until addr answers a Binding request.
func waitSTUN(ctx context.Context, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := dialTURNLoad(ctx, addr, "", "", "", 0)
		if err != nil {
			return err
		}
		c.transaction = 300 * time.Millisecond
		_, err = c.roundTrip(stun.MustBuild(stun.TransactionID, stun.BindingRequest))
		c.Close()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("turn: %s did not answer STUN within %v", addr, d)
}
