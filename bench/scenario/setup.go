package scenario

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/bench/relayconn"
)

func init() {
	register(&Scenario{
		Name:  "quic-setup",
		Title: "connection setup: QUIC vs TLS over TCP (WebSocket)",
		Summary: "Time from dialing to the first answered message: connect, TLS handshake, (WebSocket upgrade,) HELLO → " +
			"WELCOME with token verification, on QUIC opening the class streams, then PING → PONG. Measured against " +
			"the same relayd over both transports, sequentially, one connection at a time. Full handshakes use a " +
			"client without a session cache; resumed ones share a TLS session cache primed by one connection: " +
			"TLS 1.3 resumption on TCP, and 0-RTT on QUIC (quic-go DialAddrEarly, HELLO in the first flight).",
		Default: true,
		Plan: func(o Options) time.Duration {
			return time.Duration(o.Repeat*4*o.Setups)*4*time.Millisecond + 2*time.Second
		},
		Run: runSetup,
	})
}

type setupVariant struct {
	id, name, transport string
	resume, early       bool
}

var setupVariants = []setupVariant{
	{"ws-full", "WS over TLS/TCP, full handshake", "ws", false, false},
	{"quic-full", "QUIC, full handshake", "quic", false, false},
	{"ws-resumed", "WS over TLS/TCP, TLS resumption", "ws", true, false},
	{"quic-0rtt", "QUIC, 0-RTT resumption", "quic", true, true},
}

func runSetup(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
	relay, err := e.StartRelay(ctx, RelaySpec{Name: "setup"})
	if err != nil {
		return err
	}
	defer relay.Close()
	for rep := range o.Repeat {
		for _, v := range setupVariants {
			run := res.AddRun(v.id, v.name, fmt.Sprintf("%d sequential setups", o.Setups), true)
			if err := measured(ctx, e, run, fmt.Sprintf("%s %s r%d/%d", res.Name, v.id, rep+1, o.Repeat), time.Duration(o.Setups)*4*time.Millisecond,
				func() (map[string]float64, error) { return measureSetup(ctx, e, relay, v, o.Setups, 4*o.Duration) }); err != nil {
				return err
			}
		}
	}
	res.Checks = append(res.Checks,
		bench.Check{Name: "QUIC setup p50 vs TLS over TCP", Metric: "p50_us", Ours: "quic-full", Baseline: "ws-full",
			Goal: bench.Goal{Op: "<=", Target: 2, Unit: "×"}},
		bench.Check{Name: "QUIC 0-RTT resume p50 vs TLS over TCP resumed", Metric: "p50_us", Ours: "quic-0rtt", Baseline: "ws-resumed",
			Goal: bench.Goal{Op: "<=", Target: 1.2, Unit: "×"}},
		bench.Check{Name: "QUIC 0-RTT resume p50 vs TLS over TCP full", Metric: "p50_us", Ours: "quic-0rtt", Baseline: "ws-full"},
		bench.Check{Name: "QUIC setup p99 vs TLS over TCP", Metric: "p99_us", Ours: "quic-full", Baseline: "ws-full"},
		bench.Check{Name: "relayd CPU per setup, QUIC vs TLS over TCP", Metric: "cpu_server_us_per_op", Ours: "quic-full", Baseline: "ws-full"},
	)
	p := &bench.PlotSpec{File: res.Name + ".png", Title: res.Name + ": dial to first answered message (median of repeats)",
		Kind: "bars", YLabel: "latency, us"}
	p50 := bench.Series{Name: "p50"}
	p99 := bench.Series{Name: "p99"}
	for _, v := range setupVariants {
		p.Categories = append(p.Categories, v.id)
		p50.Y = append(p50.Y, res.Run(v.id).Stat("p50_us").Median)
		p99.Y = append(p99.Y, res.Run(v.id).Stat("p99_us").Median)
	}
	p.Series = []bench.Series{p50, p99}
	res.Plots = append(res.Plots, p)
	res.Notes = append(res.Notes,
		"The 0-RTT figure uses the bench's own quic-go dial (DialAddrEarly with a session cache), since the client SDK does not do 0-RTT; 'zero_rtt_pct' in results.json is the share of those connections that really used 0-RTT.",
		"The 0-RTT goal is checked against TLS-over-TCP with resumption (like for like); the ratio to a full TCP+TLS handshake is reported too.")
	return nil
}

// measureSetup runs up to n setups of variant v, bounded by limit.
func measureSetup(ctx context.Context, e *Env, relay Target, v setupVariant, n int, limit time.Duration) (map[string]float64, error) {
	toks := make([][]byte, n+1)
	for i := range toks {
		var err error
		if toks[i], err = e.Token(e.Session("setup"), "s", "clinician"); err != nil {
			return nil, err
		}
	}
	var cache tls.ClientSessionCache
	if v.resume {
		cache = tls.NewLRUClientSessionCache(16)
	}
	once := func(tok []byte) (*relayconn.Conn, error) {
		tc := e.ClientTLS()
		tc.ClientSessionCache = cache
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := relayconn.Dial(dctx, relayconn.Options{Transport: v.transport, Addr: relay.Addr(), TLS: tc, Token: tok, Early: v.early})
		if err != nil {
			return nil, err
		}
		if err := c.Ping(dctx); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	// One connection first: it primes the session cache (the ticket
	// arrives after the handshake; the PING round trip waits for it) and
	// warms both ends.
	c, err := once(toks[n])
	if err != nil {
		return nil, fmt.Errorf("priming: %w", err)
	}
	c.Close()
	h := bench.NewHistogram()
	zero := 0
	u := bench.StartUsage(append(relay.Procs(), bench.Self())...)
	start := time.Now()
	done := 0
	for i := 0; i < n && time.Since(start) < limit; i++ {
		t0 := time.Now()
		c, err := once(toks[i])
		if err != nil {
			return nil, fmt.Errorf("setup %d: %w", i, err)
		}
		h.Record(time.Since(t0))
		if c.Used0RTT() {
			zero++
		}
		c.Close()
		done++
	}
	m := h.Percentiles().Metrics("")
	maps.Copy(m, u.Metrics(done))
	m["setups"] = float64(done)
	m["throughput_per_s"] = float64(done) / time.Since(start).Seconds()
	if v.early {
		m["zero_rtt_pct"] = 100 * float64(zero) / float64(max(done, 1))
	}
	return m, nil
}
