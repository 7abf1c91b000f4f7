package client

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func msd(v float64) time.Duration        { return time.Duration(v * float64(time.Millisecond)) }
func cand(id string) Candidate {
	return Candidate{ID: id, Region: id, URL: "wss://" + id + ".test/v1/connect"}
}
func meas(id string, ms float64) Measurement { return Measurement{Candidate: cand(id), RTT: msd(ms)} }
func failed(id string) Measurement {
	return Measurement{Candidate: cand(id), Err: errors.New("connection refused")}
}

// TestSelector drives a Selector through rounds of measurements (no
// network, no sleeping: the clock is moved by hand between rounds).
func TestSelector(t *testing.T) {
	type round struct {
		after   time.Duration // clock moves this much before the round
		ms      []Measurement
		want    string // chosen relay
		switch_ bool
		reason  string // substring of the reason
	}
	cases := []struct {
		name   string
		cfg    SelectorConfig
		rounds []round
	}{
		{"first choice is the fastest", SelectorConfig{}, []round{
			{0, []Measurement{meas("us", 180), meas("eu", 80), meas("ap", 240)}, "eu", true, "first choice"},
		}},
		{"failed candidates are skipped", SelectorConfig{}, []round{
			{0, []Measurement{failed("eu"), meas("us", 180)}, "us", true, "fastest of 1"},
		}},
		{"small gain does not switch", SelectorConfig{}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 85)}, "eu", true, "first"},
			{time.Hour, []Measurement{meas("eu", 90), meas("us", 85)}, "eu", false, "below the margin"},   // 5 ms, 6%
			{time.Hour, []Measurement{meas("eu", 120), meas("us", 105)}, "eu", false, "below the margin"}, // 15 ms but 12.5%
			{time.Hour, []Measurement{meas("eu", 30), meas("us", 21)}, "eu", false, "below the margin"},   // 30% but 9 ms
		}},
		{"a large gain switches after Confirm rounds", SelectorConfig{}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{time.Hour, []Measurement{meas("eu", 280), meas("us", 180)}, "eu", false, "round 1 of 2"},
			{time.Hour, []Measurement{meas("eu", 280), meas("us", 180)}, "us", true, "switch to us"},
			{time.Hour, []Measurement{meas("eu", 170), meas("us", 180)}, "us", false, "below the margin"},
		}},
		{"one noisy round resets the count", SelectorConfig{}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{time.Hour, []Measurement{meas("eu", 280), meas("us", 180)}, "eu", false, "round 1 of 2"},
			{time.Hour, []Measurement{meas("eu", 81), meas("us", 180)}, "eu", false, "the fastest"},
			{time.Hour, []Measurement{meas("eu", 280), meas("us", 180)}, "eu", false, "round 1 of 2"},
		}},
		{"Confirm 1 switches at once", SelectorConfig{Confirm: 1}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{time.Hour, []Measurement{meas("eu", 280), meas("us", 180)}, "us", true, "in 1 rounds"},
		}},
		{"hold-down delays a switch for speed", SelectorConfig{Confirm: 1, HoldDown: time.Minute}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{10 * time.Second, []Measurement{meas("eu", 280), meas("us", 180)}, "eu", false, "50s left"},
			{50 * time.Second, []Measurement{meas("eu", 280), meas("us", 180)}, "us", true, "switch to us"},
		}},
		{"no hold-down when negative", SelectorConfig{Confirm: 1, HoldDown: -1}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{0, []Measurement{meas("eu", 280), meas("us", 180)}, "us", true, "switch"},
		}},
		{"an unreachable current relay is left at once", SelectorConfig{}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{time.Second, []Measurement{failed("eu"), meas("us", 180)}, "us", true, "could not be measured: connection refused"},
		}},
		{"a current relay gone from the map is left", SelectorConfig{}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 180)}, "eu", true, "first"},
			{time.Second, []Measurement{meas("ap", 240), meas("us", 180)}, "us", true, "not among the candidates"},
		}},
		{"custom margin", SelectorConfig{MinGain: 2 * time.Millisecond, MinRatio: 0.05, Confirm: 1, HoldDown: -1}, []round{
			{0, []Measurement{meas("eu", 80), meas("us", 85)}, "eu", true, "first"},
			{0, []Measurement{meas("eu", 90), meas("us", 85)}, "us", true, "faster by 5.0 ms (6%)"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			tc.cfg.Now = clk.now
			s, err := NewSelector(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range tc.rounds {
				clk.add(r.after)
				got, err := s.Update(r.ms)
				if err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				if got.Candidate.ID != r.want || got.Switched != r.switch_ || !strings.Contains(got.Reason, r.reason) {
					t.Fatalf("round %d: got %s switched=%v %q, want %s switched=%v reason containing %q",
						i, got.Candidate.ID, got.Switched, got.Reason, r.want, r.switch_, r.reason)
				}
				if cur, _ := s.Current(); cur.ID != r.want {
					t.Fatalf("round %d: Current() = %s, want %s", i, cur.ID, r.want)
				}
			}
		})
	}
}

func TestSelectorNothingMeasured(t *testing.T) {
	s, err := NewSelector(SelectorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update([]Measurement{failed("eu")}); !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("Update with nothing measured = %v, want ErrNoCandidate", err)
	}
	if _, ok := s.Current(); ok {
		t.Fatal("a choice was made from nothing")
	}
	s.Update([]Measurement{meas("eu", 80)})
	if _, err := s.Update(nil); !errors.Is(err, ErrNoCandidate) {
		t.Fatalf("Update(nil) = %v, want ErrNoCandidate", err)
	}
	if cur, _ := s.Current(); cur.ID != "eu" {
		t.Fatalf("the previous choice was lost: %q", cur.ID)
	}
}

func TestSelectorConfigRefused(t *testing.T) {
	for _, cfg := range []SelectorConfig{{MinGain: -1}, {MinRatio: 1}, {MinRatio: -0.1}, {Confirm: -1}} {
		if _, err := NewSelector(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewSelector(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
