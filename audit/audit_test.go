package audit

import (
	"errors"
	"fmt"
	"testing"
)

func chain(session string, n int) []Entry {
	prev := Genesis
	var es []Entry
	for i := 1; i <= n; i++ {
		f := []byte(fmt.Sprintf("frame %d", i))
		h := Hash(prev, session, uint64(i), f)
		es = append(es, Entry{Seq: uint64(i), Hash: h, Frame: f})
		prev = h
	}
	return es
}

func TestVerify(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func([]Entry) []Entry
		session string
		wantSeq uint64 // 0: verifies
	}{
		{"intact", func(e []Entry) []Entry { return e }, "s", 0},
		{"frame changed", func(e []Entry) []Entry { e[2].Frame = []byte("frame X"); return e }, "s", 3},
		{"hash changed", func(e []Entry) []Entry { e[1].Hash = append([]byte(nil), e[0].Hash...); return e }, "s", 2},
		{"entry dropped", func(e []Entry) []Entry { return append(e[:2], e[3:]...) }, "s", 4},
		{"entries swapped", func(e []Entry) []Entry { e[1], e[2] = e[2], e[1]; return e }, "s", 3},
		{"other session", func(e []Entry) []Entry { return e }, "t", 1},
		{"hash missing", func(e []Entry) []Entry { e[0].Hash = nil; return e }, "s", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := tc.mutate(chain("s", 5))
			_, err := Verify(tc.session, Genesis, es)
			var be *BreakError
			switch {
			case tc.wantSeq == 0 && err != nil:
				t.Fatalf("got %v, want a verified chain", err)
			case tc.wantSeq != 0 && (!errors.As(err, &be) || be.Seq != tc.wantSeq || !errors.Is(err, ErrBroken)):
				t.Fatalf("got %v, want a break at seq %d", err, tc.wantSeq)
			}
		})
	}
	// Verifying in pieces gives the same result as at once.
	es := chain("s", 6)
	mid, err := Verify("s", Genesis, es[:3])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify("s", mid, es[3:]); err != nil {
		t.Fatalf("second half: %v", err)
	}
}

func TestChecker(t *testing.T) {
	es := chain("s", 3)
	var c Checker
	cases := []struct {
		name    string
		prev    []byte
		session string
		e       Entry
		want    bool
	}{
		{"first entry", Genesis, "s", es[0], true},
		{"later entry", es[1].Hash, "s", es[2], true},
		{"wrong predecessor", es[0].Hash, "s", es[2], false},
		{"other session", Genesis, "t", es[0], false},
		{"other seq", Genesis, "s", Entry{Seq: 2, Hash: es[0].Hash, Frame: es[0].Frame}, false},
		{"frame changed", Genesis, "s", Entry{Seq: 1, Hash: es[0].Hash, Frame: []byte("frame X")}, false},
		{"hash truncated", Genesis, "s", Entry{Seq: 1, Hash: es[0].Hash[:Size-1], Frame: es[0].Frame}, false},
		{"hash missing", Genesis, "s", Entry{Seq: 1, Frame: es[0].Frame}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Check(tc.prev, tc.session, tc.e.Seq, tc.e.Frame, tc.e.Hash)
			_, err := Verify(tc.session, tc.prev, []Entry{tc.e})
			if got != tc.want || got != (err == nil) {
				t.Errorf("Check = %v, want %v (Verify: %v)", got, tc.want, err)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { c.Check(es[1].Hash, "s", 3, es[2].Frame, es[2].Hash) }); n != 0 {
		t.Errorf("Check allocates %v times, want 0", n)
	}
}
