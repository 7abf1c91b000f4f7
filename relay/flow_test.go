package relay_test

import (
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

func clinician(sid string) token.Claims {
	return token.Claims{Subject: "c1", Role: "clinician", Session: sid, Device: "HA-1", Model: "m1"}
}

func patient(sid string) token.Claims {
	return token.Claims{Subject: "p1", Role: "patient", Session: sid, Device: "HA-1", Model: "m1"}
}

func configPayload(base uint64, params ...wire.Param) []byte {
	return wire.AppendConfig(nil, &wire.Config{BaseVersion: base, Params: params})
}

func TestConfigFlowAcrossTransports(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	cl := relaytest.Dial(t, r, "ws")
	w := cl.Hello(r.Token(t, clinician("s1")), false, 0)
	if w.Role != wire.RoleClinician || w.Session != "s1" || w.Epoch != 1 {
		t.Fatalf("welcome = %+v", w)
	}
	pt := relaytest.Dial(t, r, "quic")
	pt.Hello(r.Token(t, patient("s1")), false, 0)

	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "m1", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: configPayload(0, wire.Param{Name: "gain.l.2k", Value: 30})})
	p := cl.Expect(wire.TypePersisted)
	if p.Seq != 1 || p.ClientID != "m1" {
		t.Fatalf("persisted = %+v", p)
	}
	d := pt.Expect(wire.TypeDeliver)
	if d.Seq != 1 || d.Sender != "c1" || d.Kind != wire.KindConfig || d.ClientID != "m1" {
		t.Fatalf("deliver = %+v", d)
	}
	pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: 1, Stage: wire.StageReceived})
	pt.Send(&wire.Frame{Type: wire.TypeAck, Seq: 1, Stage: wire.StageApplied})
	for _, want := range []wire.Stage{wire.StageReceived, wire.StageApplied} {
		rc := cl.Expect(wire.TypeReceipt)
		if rc.RefSeq != 1 || rc.Stage != want || rc.RefClientID != "m1" || rc.Sender != "p1" {
			t.Fatalf("receipt = %+v, want stage %v", rc, want)
		}
		prc := pt.Expect(wire.TypeReceipt)
		if prc.Stage != want {
			t.Fatalf("patient's own receipt = %+v", prc)
		}
	}
	// Retried send: same seq, no new delivery.
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "m1", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: configPayload(0, wire.Param{Name: "gain.l.2k", Value: 30})})
	if p := cl.Expect(wire.TypePersisted); p.Seq != 1 {
		t.Fatalf("retry persisted seq %d, want 1", p.Seq)
	}
	// Stale base: conflict, not delivered.
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "m2", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: configPayload(0, wire.Param{Name: "gain.l.2k", Value: 40})})
	if e := cl.Expect(wire.TypeError); e.Code != wire.CodeConflict || e.RefClientID != "m2" || e.Fatal || e.ConfigVersion != 1 {
		t.Fatalf("error = %+v", e)
	}
	// Step too large: limit.
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "m3", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: configPayload(1, wire.Param{Name: "gain.l.2k", Value: 300})})
	if e := cl.Expect(wire.TypeError); e.Code != wire.CodeLimit || e.RefClientID != "m3" {
		t.Fatalf("error = %+v", e)
	}
	if f, err := pt.Next(200 * time.Millisecond); err == nil {
		t.Fatalf("patient got %v after rejected commands", f.Type)
	}
}
