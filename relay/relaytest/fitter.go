package relaytest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Fitter drives config commands from a clinician's connection to a
// patient's (the hearing aid's app) and checks the delivery promise on
// each: PERSISTED once with a seq above every earlier one, delivered to
// the patient exactly once with that seq, based on the config version the
// device has, applied, and the applied receipt back at the clinician.
// Tests swap Clin and Pat after reconnects and keep the counters.
type Fitter struct {
	T        testing.TB
	Clin     *Conn
	Pat      *Conn
	Version  uint64          // config version the next command is based on
	Applied  map[uint64]bool // seqs the hearing aid applied
	Last     uint64          // highest seq delivered to the patient
	commands int
}

// NewFitter starts at config version 0.
func NewFitter(t testing.TB, clin, pat *Conn) *Fitter {
	return &Fitter{T: t, Clin: clin, Pat: pat, Applied: map[uint64]bool{}}
}

// Command sends one config command and follows it to its applied receipt.
func (f *Fitter) Command() {
	t := f.T
	t.Helper()
	f.commands++
	id := fmt.Sprintf("cmd-%d", f.commands)
	cfg := wire.AppendConfig(nil, &wire.Config{BaseVersion: f.Version, Params: []wire.Param{{Name: "gain.l.2k", Value: int64(f.commands % 40)}}})
	f.Clin.Send(&wire.Frame{Type: wire.TypeSend, ClientID: id, Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: cfg})
	p := f.Clin.NextOf(wire.TypePersisted, 10*time.Second)
	if p.ClientID != id || p.Seq <= f.Last {
		t.Fatalf("%s PERSISTED as %+v after seq %d", id, p, f.Last)
	}
	d := f.Pat.NextOf(wire.TypeDeliver, 10*time.Second)
	if d.Seq != p.Seq || d.ClientID != id || f.Applied[d.Seq] {
		t.Fatalf("patient got seq %d %q, want %d %q once", d.Seq, d.ClientID, p.Seq, id)
	}
	got, err := wire.DecodeConfig(d.Payload)
	if err != nil || got.BaseVersion != f.Version {
		t.Fatalf("delivered config base %d (%v), want %d", got.BaseVersion, err, f.Version)
	}
	f.Applied[d.Seq] = true
	f.Last = d.Seq
	f.Version++
	f.Pat.Send(&wire.Frame{Type: wire.TypeAck, Seq: d.Seq, Stage: wire.StageApplied})
	for {
		r := f.Clin.NextOf(wire.TypeReceipt, 10*time.Second)
		if r.RefSeq == d.Seq && r.Stage == wire.StageApplied {
			return
		}
	}
}

// ExpectOnce reads from ch until n distinct items (by key) arrived,
// failing the test on one that arrives twice, or when ctx ends first.
// what names the receiver in messages.
func ExpectOnce[T any](ctx context.Context, t testing.TB, what string, ch <-chan T, n int, key func(T) string) {
	t.Helper()
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case v := <-ch:
			k := key(v)
			if seen[k] {
				t.Fatalf("%s: %q delivered twice", what, k)
			}
			seen[k] = true
		case <-ctx.Done():
			t.Fatalf("%s: got %d of %d", what, len(seen), n)
		}
	}
}
