package relay

import (
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

func TestDeviceCompareAndSet(t *testing.T) {
	lim := &ModelLimits{Params: map[string]ParamLimit{"gain": {Min: -100, Max: 600, MaxStep: 60}}}
	d := &device{key: "device/t/1"}
	if err := d.load(nil); err != nil {
		t.Fatal(err)
	}
	cmd := func(base uint64, v int64) *wire.Config {
		return &wire.Config{BaseVersion: base, Params: []wire.Param{{Name: "gain", Value: v}}}
	}
	steps := []struct {
		name     string
		do       func() *protoError
		wantCode wire.Code
		wantHead uint64
		wantV    uint64
	}{
		{"first command", func() *protoError { _, e := d.accept(cmd(0, 50), lim, "a"); return e }, 0, 1, 0},
		{"stale base", func() *protoError { _, e := d.accept(cmd(0, 50), lim, "b"); return e }, wire.CodeConflict, 1, 0},
		{"pipelined on head", func() *protoError { _, e := d.accept(cmd(1, 100), lim, "c"); return e }, 0, 2, 0},
		{"step too large", func() *protoError { _, e := d.accept(cmd(2, 300), lim, "d"); return e }, wire.CodeLimit, 2, 0},
		{"out of range", func() *protoError { _, e := d.accept(cmd(2, 601), lim, "e"); return e }, wire.CodeLimit, 2, 0},
		{"unknown parameter", func() *protoError {
			_, e := d.accept(&wire.Config{BaseVersion: 2, Params: []wire.Param{{Name: "x", Value: 1}}}, lim, "f")
			return e
		}, wire.CodeLimit, 2, 0},
		{"first applied", func() *protoError { d.onApplied(cmd(0, 50)); return nil }, 0, 2, 1},
		{"second rejected: head falls back", func() *protoError { d.onRejected(cmd(1, 100)); return nil }, 0, 1, 1},
		{"rebased command", func() *protoError { _, e := d.accept(cmd(1, 80), lim, "g"); return e }, 0, 2, 1},
	}
	for _, st := range steps {
		e := st.do()
		var got wire.Code
		if e != nil {
			got = e.code
		}
		if got != st.wantCode || d.head != st.wantHead || d.applied != st.wantV {
			t.Fatalf("%s: code %v head %d applied %d; want %v %d %d", st.name, got, d.head, d.applied, st.wantCode, st.wantHead, st.wantV)
		}
	}
	// The state survives its blob.
	d2 := &device{}
	if err := d2.load(d.blob()); err != nil {
		t.Fatal(err)
	}
	if d2.head != 2 || d2.applied != 1 || d2.headParams["gain"] != 80 || d2.appliedParams["gain"] != 50 {
		t.Fatalf("reloaded %+v", d2)
	}
}

// FuzzDeviceBlob: stored device state is decoded on load; garbage must
// give an error, never a panic, and what loads must re-encode stably.
func FuzzDeviceBlob(f *testing.F) {
	d := &device{}
	_ = d.load(nil)
	f.Add(d.blob())
	d.accept(&wire.Config{BaseVersion: 0, Params: []wire.Param{{Name: "gain.l.2k", Value: -40}}}, &ModelLimits{Open: true}, "x")
	f.Add(d.blob())
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := &device{}
		if err := d.load(b); err != nil {
			return
		}
		d2 := &device{}
		if err := d2.load(d.blob()); err != nil {
			t.Fatalf("re-encoded state does not load: %v", err)
		}
		if d2.head != d.head || d2.applied != d.applied || len(d2.headParams) != len(d.headParams) {
			t.Fatalf("state changed through its blob")
		}
	})
}
