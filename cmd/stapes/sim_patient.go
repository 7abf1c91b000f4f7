package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/wire"
)

// patientSim is a phone app connected to a simulated hearing aid: it
// writes each config command over "BLE" (a delay), reads it back, and acks
// applied — or rejected when the base version is not the aid's own, or
// when the simulated aid refuses it.
type patientSim struct {
	bleDelay   time.Duration
	rejectRate float64
	telemetry  time.Duration
	// ready, if set, is closed once the app is connected.
	ready chan struct{}
	call  *callFlags // --call: answer WebRTC calls
	calls callRouter

	mu      sync.Mutex // guards the hearing aid below
	version uint64
	params  map[string]int64
	applied []uint64 // seqs applied, in order: the aid's own log
}

func (p *patientSim) run(ctx context.Context, cfg client.Config, out *lineWriter) error {
	cfg.DisableAutoAck = false
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	p.params = map[string]int64{}
	if p.ready != nil {
		if _, err := c.WaitConnected(ctx); err != nil {
			return err
		}
		close(p.ready)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); printEvents(c, out) }()
	if p.call != nil && p.call.on {
		w, err := c.WaitConnected(ctx)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.call.answerCalls(ctx, c, w.Session, &p.calls, out) }()
	}
	if p.telemetry > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); p.sendTelemetry(ctx, c) }()
	}
	defer c.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return c.Err()
		case d, ok := <-c.Deliveries():
			if !ok {
				return c.Err()
			}
			p.handle(ctx, c, d, out)
		}
	}
}

func (p *patientSim) handle(ctx context.Context, c *client.Client, d client.Delivery, out *lineWriter) {
	switch d.Kind {
	case wire.KindChat:
		out.printf("chat seq=%d from %s (%d bytes)", d.Seq, d.Sender, len(d.Payload))
		return
	case wire.KindSignal:
		p.calls.handle(d)
		return
	case wire.KindConfig:
	default:
		return
	}
	cmd, err := wire.DecodeConfig(d.Payload)
	if err != nil {
		p.ack(ctx, c, d.Seq, wire.StageRejected, "unreadable", out)
		return
	}
	start := time.Now()
	stage, reason := p.apply(ctx, &cmd, d.Seq)
	if stage == wire.StageApplied {
		out.printf("hearing aid applied seq=%d v%d→v%d (%d params) in %v", d.Seq, cmd.BaseVersion, cmd.BaseVersion+1, len(cmd.Params), time.Since(start).Round(time.Millisecond))
	} else {
		out.printf("hearing aid rejected seq=%d: %s", d.Seq, reason)
	}
	p.ack(ctx, c, d.Seq, stage, reason, out)
}

// apply is the hearing aid: compare-and-set on its own version, a BLE
// write, a read-back that must match.
func (p *patientSim) apply(ctx context.Context, cmd *wire.Config, seq uint64) (wire.Stage, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cmd.BaseVersion != p.version {
		return wire.StageRejected, fmt.Sprintf("stale_base: aid is at v%d", p.version)
	}
	if p.rejectRate > 0 && rand.Float64() < p.rejectRate {
		return wire.StageRejected, "device_refused"
	}
	t := time.NewTimer(p.bleDelay + p.bleDelay/4) // write, then read back
	select {
	case <-ctx.Done():
		t.Stop()
		return wire.StageRejected, "interrupted"
	case <-t.C:
	}
	for _, prm := range cmd.Params {
		p.params[prm.Name] = prm.Value
	}
	for _, prm := range cmd.Params { // read-back check
		if p.params[prm.Name] != prm.Value {
			return wire.StageRejected, "readback_mismatch"
		}
	}
	p.version = cmd.BaseVersion + 1
	p.applied = append(p.applied, seq)
	return wire.StageApplied, ""
}

func (p *patientSim) ack(ctx context.Context, c *client.Client, seq uint64, stage wire.Stage, reason string, out *lineWriter) {
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Ack(actx, seq, stage, reason); err != nil && ctx.Err() == nil {
		out.printf("ack %s for seq=%d not confirmed: %v", stage, seq, err)
	}
}

func (p *patientSim) sendTelemetry(ctx context.Context, c *client.Client) {
	t := time.NewTicker(p.telemetry)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			return
		case <-t.C:
			sample := fmt.Appendf(nil, `{"battery":%d,"snr_db":%d}`, 90-i%10, 20+i%5)
			_, _ = c.Send(ctx, wire.KindTelemetry, sample, false) // dropped when not connected: telemetry is ephemeral
		}
	}
}
