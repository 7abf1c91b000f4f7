package scenario

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/relayconn"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/wire"
)

func init() {
	register(&Scenario{
		Name:  "idle-memory",
		Title: "resident memory per idle WebSocket session",
		Summary: "N WebSocket connections (plain ws://, so TLS buffers do not blur the comparison) are opened to a " +
			"freshly started server process; each sends one message and reads one back (HELLO → WELCOME on relayd: " +
			"an authenticated session, two connections per fitting session), then stays idle. RSS per connection is " +
			"(VmRSS after − VmRSS before) ÷ N, read from /proc/<pid>/status once the connections have been idle for 2 s. " +
			"Baselines: bare gorilla/websocket and coder/websocket echo servers, one goroutine per connection, as their " +
			"examples are written.",
		Default: true,
		Plan: func(o Options) time.Duration {
			return time.Duration(o.Repeat*3) * (5*time.Second + time.Duration(o.Conns)*time.Millisecond)
		},
		Run: runIdle,
	})
}

const idleSettle = 2 * time.Second

func runIdle(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
	limit, err := bench.RaiseNoFile()
	if err != nil {
		return err
	}
	if need := uint64(o.Conns) + 512; limit < need {
		return fmt.Errorf("open-file limit %d is below the %d that %d connections need (ulimit -n)", limit, need, o.Conns)
	}
	hellos := make([][]byte, o.Conns)
	for i := range hellos {
		sess := fmt.Sprintf("idle-%d", i/2) // two participants per fitting session
		role, subj := "clinician", "c"
		if i%2 == 1 {
			role, subj = "patient", "p"
		}
		tok, err := e.Token(sess, subj, role)
		if err != nil {
			return err
		}
		hellos[i] = wire.Encode(&wire.Frame{Type: wire.TypeHello, Token: tok, MinVersion: 1, MaxVersion: 1})
	}
	servers := []struct {
		id, name string
		ours     bool
		path     string
		proto    string
		start    func() (addr string, procs []bench.Proc, stop func(), err error)
	}{
		{"relayd", "relayd (authenticated sessions)", true, relay.WSPath, relay.Subprotocol, func() (string, []bench.Proc, func(), error) {
			t, err := e.StartRelay(ctx, RelaySpec{Name: "idle", Plain: true})
			if err != nil {
				return "", nil, nil, err
			}
			return t.Addr(), t.Procs(), t.Close, nil
		}},
		{"gorilla", "gorilla/websocket echo", false, "/", "", func() (string, []bench.Proc, func(), error) {
			p, err := e.StartBaseline(ctx, "gorilla-echo")
			if err != nil {
				return "", nil, nil, err
			}
			return p.Addr, []bench.Proc{p.Proc()}, p.Stop, nil
		}},
		{"coder", "coder/websocket echo", false, "/", "", func() (string, []bench.Proc, func(), error) {
			p, err := e.StartBaseline(ctx, "coder-echo")
			if err != nil {
				return "", nil, nil, err
			}
			return p.Addr, []bench.Proc{p.Proc()}, p.Stop, nil
		}},
	}
	for rep := range o.Repeat {
		for _, srv := range servers {
			run := res.AddRun(srv.id, srv.name, fmt.Sprintf("%d idle connections", o.Conns), srv.ours)
			if err := measured(ctx, e, run, fmt.Sprintf("%s %s r%d/%d", res.Name, srv.id, rep+1, o.Repeat), 5*time.Second+time.Duration(o.Conns)*time.Millisecond,
				func() (map[string]float64, error) {
					return measureIdle(ctx, o.Conns, hellos, srv.path, srv.proto, srv.ours, srv.start)
				}); err != nil {
				return err
			}
		}
	}
	res.Checks = append(res.Checks,
		bench.Check{Name: "RSS per connection vs gorilla/websocket", Metric: "rss_per_conn_kib", Ours: "relayd", Baseline: "gorilla",
			Goal: bench.Goal{Op: "<=", Target: 0.6, Unit: "×"}},
		bench.Check{Name: "RSS per connection (stretch)", Metric: "rss_per_conn_kib", Ours: "relayd",
			Goal: bench.Goal{Op: "<=", Target: 4, Unit: "KiB"}},
		bench.Check{Name: "RSS per connection vs coder/websocket", Metric: "rss_per_conn_kib", Ours: "relayd", Baseline: "coder"},
	)
	p := &bench.PlotSpec{File: res.Name + ".png", Title: fmt.Sprintf("%s: RSS per idle connection, %d connections (median of repeats)", res.Name, o.Conns),
		Kind: "bars", YLabel: "KiB per connection"}
	s := bench.Series{Name: "KiB per connection"}
	for _, srv := range servers {
		p.Categories = append(p.Categories, srv.name)
		s.Y = append(s.Y, res.Run(srv.id).Stat("rss_per_conn_kib").Median)
	}
	p.Series = []bench.Series{s}
	res.Plots = append(res.Plots, p)
	res.Notes = append(res.Notes,
		"Each server process is started fresh for every repeat; its RSS is read before the first connection (after the process settled) and after the last, so start-up memory is not counted.",
		"Client connections come from 127.0.0.2–127.0.0.9 so ephemeral ports do not run short; the harness holds them without a goroutine each.",
		"relayd pings idle sessions every 15 s and closes those silent for 45 s; the measurement ends well before that.")
	return nil
}

func measureIdle(ctx context.Context, n int, hellos [][]byte, path, proto string, relayd bool,
	start func() (string, []bench.Proc, func(), error)) (map[string]float64, error) {
	addr, procs, stop, err := start()
	if err != nil {
		return nil, err
	}
	defer stop()
	pid := procs[0].Pid
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return nil, err
	}
	before, err := bench.ReadProc(pid)
	if err != nil {
		return nil, err
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next atomic.Int64
	var firstErr error
	var errMu sync.Mutex
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, reply, err := relayconn.DialIdle(dctx, addr, path, proto, loopbackIP(i, 8), hellos[i])
				cancel()
				if err == nil {
					err = checkIdleReply(relayd, reply, hellos[i])
				}
				if err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					errMu.Unlock()
					if c != nil {
						c.Close()
					}
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	connectTime := time.Since(t0)
	if firstErr != nil {
		return nil, firstErr
	}
	if err := sleep(ctx, idleSettle); err != nil {
		return nil, err
	}
	after, err := bench.ReadProc(pid)
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"conns":            float64(n),
		"rss_per_conn_kib": float64(after.RSSBytes-before.RSSBytes) / float64(n) / 1024,
		"rss_before_kib":   float64(before.RSSBytes) / 1024,
		"rss_after_kib":    float64(after.RSSBytes) / 1024,
		"threads":          float64(after.Threads),
		"connect_per_s":    float64(n) / connectTime.Seconds(),
	}, nil
}

func checkIdleReply(relayd bool, reply, sent []byte) error {
	if !relayd {
		if !bytes.Equal(reply, sent) {
			return fmt.Errorf("echo differs from what was sent")
		}
		return nil
	}
	f, err := wire.Decode(reply, 1<<20)
	if err != nil {
		return err
	}
	if f.Type != wire.TypeWelcome {
		return fmt.Errorf("got %v (%v %s), want WELCOME", f.Type, f.Code, f.Message)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
