package scenario

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/stapes-relay/stapes/bench"
)

// The single-socket Go packet sink (`stapes bench _serve udp-sink`): the
// per-core reference of issue 7's forwarding goal. The same open-loop
// load as the TURN runs — turnPayload-byte datagrams from turnAllocs
// sockets — goes straight to one socket that one goroutine reads and
// drops; its CPU per packet is the cost of receiving a packet in Go.
// stapes does a receive and a send per relayed packet, so 0.8× the
// sink's packets per core means at most 1.25× its CPU per packet.

// startSink runs the sink baseline.
func startSink(ctx context.Context, e *Env) *turnServer {
	s := &turnServer{id: "sink", system: "single-socket Go packet sink (one goroutine, ReadFromUDPAddrPort, drops)"}
	p, err := e.StartBaseline(ctx, "udp-sink")
	if err != nil {
		s.err = err
		return s
	}
	s.addr, s.procs = p.Addr, []bench.Proc{p.Proc()}
	return s
}

// sinkCount asks the sink how many datagrams it has received.
func sinkCount(addr string) (int64, error) {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 16)
	for range 5 {
		if _, err := c.Write([]byte{'?'}); err != nil {
			return 0, err
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && n == 8 {
			return int64(binary.BigEndian.Uint64(buf)), nil
		}
	}
	return 0, errors.New("turn: the sink does not answer")
}

// runSink offers rate datagrams/s to the sink for d.
func runSink(ctx context.Context, addr string, rate float64, d time.Duration, procs []bench.Proc) (map[string]float64, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	conns := make([]*net.UDPConn, turnAllocs)
	for i := range conns {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return nil, err
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	r0, err := sinkCount(addr)
	if err != nil {
		return nil, err
	}
	payload := make([]byte, turnPayload)
	u := bench.StartUsage(append(procs, bench.Self())...)
	n, elapsed, err := offerPaced(ctx, rate, d, len(conns), func(i int) error {
		_, err := conns[i].Write(payload)
		return err
	})
	if err != nil {
		return nil, err
	}
	r1, err := sinkCount(addr)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("turn: nothing sent to the sink")
	}
	recv := r1 - r0
	return deliveryMetrics(u, recv, n, recv*turnPayload, elapsed), nil
}

// runSinks runs the sink at each rate (one repeat).
func runSinks(ctx context.Context, e *Env, o Options, s *turnServer, rates []float64, rep int, res *bench.ScenarioResult) error {
	for _, r := range rates {
		run := res.AddRun("sink-"+rateLabel(r), s.system, fmt.Sprintf("%s datagrams/s of %d B from %d sockets", rateLabel(r), turnPayload, turnAllocs), false)
		if s.err != nil {
			run.Add(nil, s.err)
			continue
		}
		if err := measured(ctx, e, run, fmt.Sprintf("turn sink %s/s r%d/%d", rateLabel(r), rep+1, o.Repeat), o.Duration+time.Second,
			func() (map[string]float64, error) { return runSink(ctx, s.addr, r, o.Duration, s.procs) }); err != nil {
			return err
		}
	}
	return nil
}
