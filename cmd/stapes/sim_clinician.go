package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/wire"
)

// clinicianSim sends config changes and prints each receipt stage with
// its time since the send.
type clinicianSim struct {
	commands int
	interval time.Duration
	param    string
	step     int64
	call     *callFlags // --call: place a WebRTC call alongside the commands
}

// result counts what happened to the commands.
type clinResult struct {
	applied, rejected, refused int
}

func (s *clinicianSim) run(ctx context.Context, cfg client.Config, out *lineWriter) error {
	_, err := s.runCount(ctx, cfg, out)
	return err
}

func (s *clinicianSim) runCount(ctx context.Context, cfg client.Config, out *lineWriter) (res clinResult, err error) {
	c, err := client.New(cfg)
	if err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.Close()
	wg.Add(1)
	go func() { defer wg.Done(); printEvents(c, out) }()
	w, err := c.WaitConnected(ctx)
	if err != nil {
		return res, err
	}
	if s.call != nil && s.call.on {
		callErr := make(chan error, 1)
		go func() { callErr <- s.call.placeCall(ctx, c, w.Session, out) }()
		defer func() {
			if cerr := <-callErr; err == nil && cerr != nil && ctx.Err() == nil {
				err = cerr
			}
		}()
		if s.commands == 0 { // the call only
			return res, nil
		}
	}
	base := w.ConfigVersion
	value := int64(0)
	if w.Config != nil {
		for _, p := range w.Config.Params {
			if p.Name == s.param {
				value = p.Value
			}
		}
	}
	for i := 0; s.commands == 0 || i < s.commands; i++ {
		if i > 0 {
			t := time.NewTimer(s.interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return res, nil
			case <-t.C:
			}
		}
		next := value + s.step
		if next > 600 || next < -100 {
			s.step, next = -s.step, value-s.step
		}
		payload := wire.AppendConfig(nil, &wire.Config{BaseVersion: base, Params: []wire.Param{{Name: s.param, Value: next}}})
		start := time.Now()
		sent, err := c.Send(ctx, wire.KindConfig, payload, true)
		if err != nil {
			return res, err
		}
		label := fmt.Sprintf("cmd %s v%d→v%d %s=%+.1fdB", sent.ClientID()[:8], base, base+1, s.param, float64(next)/10)
		seq, _, err := sent.Persisted(ctx)
		if err != nil {
			var ce *client.Error
			if errors.As(err, &ce) && ce.Code == wire.CodeConflict {
				out.printf("%s refused: conflict, device head is v%d; rebasing", label, ce.ConfigVersion)
				res.refused++
				base = ce.ConfigVersion
				continue
			}
			if ctx.Err() != nil {
				return res, nil
			}
			out.printf("%s refused: %v", label, err)
			res.refused++
			continue
		}
		out.printf("%s persisted seq=%d +%v", label, seq, since(start))
		rc, err := sent.Wait(ctx, wire.StageReceived)
		if err == nil {
			out.printf("%s received by %s +%v", label, rc.Sender, since(start))
		}
		final, err := sent.Final(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return res, nil
			}
			return res, err
		}
		if final.Stage == wire.StageApplied {
			out.printf("%s APPLIED on the hearing aid +%v", label, since(start))
			base, value = base+1, next
			res.applied++
		} else {
			out.printf("%s REJECTED by the hearing aid (%s) +%v", label, final.Reason, since(start))
			res.rejected++
		}
	}
	return res, nil
}

func since(t time.Time) time.Duration {
	d := time.Since(t)
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
