package client_test

import (
	"context"
	"log/slog"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/wire"
)

// A patient app: receive config commands, apply them to the hearing aid,
// ack applied or rejected.
func Example_patient() {
	ctx := context.Background()
	c, err := client.New(client.Config{
		URLs:   []string{"quic://relay.example:8443", "wss://relay.example:8443/v1/connect"},
		Token:  func(ctx context.Context) ([]byte, error) { return fetchToken(ctx) },
		Logger: slog.Default(),
	})
	if err != nil {
		return
	}
	defer c.Close()
	for d := range c.Deliveries() { // `received` is acked automatically
		if d.Kind != wire.KindConfig {
			continue
		}
		if err := writeToHearingAid(d.Payload); err != nil {
			c.Ack(ctx, d.Seq, wire.StageRejected, "ble_write_failed")
			continue
		}
		c.Ack(ctx, d.Seq, wire.StageApplied, "")
	}
}

// A clinician: send a config command and follow it to its final receipt.
func Example_clinician() {
	ctx := context.Background()
	c, err := client.New(client.Config{
		URLs:  []string{"wss://relay.example:8443/v1/connect"},
		Token: func(ctx context.Context) ([]byte, error) { return fetchToken(ctx) },
	})
	if err != nil {
		return
	}
	defer c.Close()
	w, err := c.WaitConnected(ctx)
	if err != nil {
		return
	}
	cmd := wire.AppendConfig(nil, &wire.Config{
		BaseVersion: w.ConfigVersion,
		Params:      []wire.Param{{Name: "gain_500hz", Value: 35}},
	})
	sent, err := c.Send(ctx, wire.KindConfig, cmd, true)
	if err != nil {
		return
	}
	seq, _, err := sent.Persisted(ctx) // committed to the session log
	if err != nil {
		return // e.g. client.CodeOf(err) == wire.CodeConflict: stale base
	}
	_ = seq
	r, err := sent.Final(ctx) // applied or rejected by the hearing aid
	if err == nil && r.Stage == wire.StageRejected {
		_ = r.Reason
	}
}

func fetchToken(context.Context) ([]byte, error) { return nil, nil }
func writeToHearingAid([]byte) error             { return nil }
