package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// counter returns the value of a counter (or gauge) series of reg.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					if m.Gauge != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestStalledTelemetryNeverBlocksConfig: the patient's telemetry stream
// stops reading; a telemetry flood fills its queue and is dropped with a
// counted reason, while config commands on the durable stream go through.
func TestStalledTelemetryNeverBlocksConfig(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.Registerer = reg
		c.EphemeralQueue = 16
	}})
	cl := relaytest.Dial(t, r, "ws")
	cl.Hello(r.Token(t, clinician("eph")), false, 0)
	pt := relaytest.Dial(t, r, "quic")
	pt.Hello(r.Token(t, patient("eph")), false, 0)
	pt.PauseReads(wire.ClassTelemetry)

	sample := make([]byte, 1000)
	const flood = 5000 // 5 MB: far beyond the stream's flow-control window
	for i := range flood {
		cl.Send(&wire.Frame{Type: wire.TypeSend, Kind: wire.KindTelemetry, ClientID: fmt.Sprint(i), Payload: sample})
	}
	deadline := time.Now().Add(10 * time.Second)
	for counter(t, reg, "stapes_relay_drops_total", "reason", "queue_full") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no queue_full drops counted under a telemetry flood to a stalled stream")
		}
		time.Sleep(10 * time.Millisecond) // polling a metric
	}
	for i := range 3 {
		cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: fmt.Sprintf("cfg%d", i), Kind: wire.KindConfig, Flags: wire.FlagDurable,
			Payload: configPayload(uint64(i), wire.Param{Name: "gain", Value: int64(i)})})
		cl.Expect(wire.TypePersisted)
		for {
			// At most one telemetry frame was read before the pause took hold.
			d := pt.Expect(wire.TypeDeliver)
			if d.Kind == wire.KindConfig {
				break
			}
			if d.Kind != wire.KindTelemetry {
				t.Fatalf("patient got kind %v", d.Kind)
			}
		}
	}
	drops := counter(t, reg, "stapes_relay_drops_total", "reason", "queue_full")
	t.Logf("%v telemetry frames dropped (queue_full) of %d; config delivered", drops, flood)
	pt.ResumeReads(wire.ClassTelemetry)
}
