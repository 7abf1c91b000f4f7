package client

import (
	"fmt"
	"sync"
	"time"
)

// SelectorConfig configures a Selector. Zero fields take the defaults
// their comments state.
type SelectorConfig struct {
	// MinGain and MinRatio are the hysteresis margin: the client leaves
	// its current relay for a faster one only when the faster one's RTT is
	// lower by at least MinGain AND by at least MinRatio of the current
	// RTT. Defaults 10 ms and 0.2 (20%).
	MinGain  time.Duration
	MinRatio float64
	// Confirm is how many consecutive Updates a faster relay must clear
	// the margin in before the client switches, so one noisy round does
	// not move it. Default 2.
	Confirm int
	// HoldDown is how long after a switch no other switch for speed is
	// made. Default 1 minute; negative: none. A current relay that cannot
	// be measured (down, draining) is left at once regardless.
	HoldDown time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Choice is what a Selector picked after an Update.
type Choice struct {
	Candidate Candidate
	RTT       time.Duration // its RTT in this Update
	Switched  bool          // a different relay than before (or the first choice)
	Reason    string        // why, for people and logs (relay ids and times only)
}

// Selector picks the nearest relay from successive rounds of measurements
// with hysteresis, so a client does not flap between relays whose RTTs
// are close or noisy. Safe for concurrent use.
type Selector struct {
	cfg SelectorConfig

	mu     sync.Mutex // guards the fields below
	cur    *Candidate // nil before the first choice
	since  time.Time  // when cur was chosen
	streak int        // consecutive Updates in which a faster relay cleared the margin
}

// NewSelector validates cfg and returns a Selector with no choice yet.
func NewSelector(cfg SelectorConfig) (*Selector, error) {
	if cfg.MinGain < 0 || cfg.MinRatio < 0 || cfg.MinRatio >= 1 || cfg.Confirm < 0 {
		return nil, fmt.Errorf("%w: selector margin must be MinGain >= 0, 0 <= MinRatio < 1, Confirm >= 0", ErrInvalidConfig)
	}
	if cfg.MinGain == 0 {
		cfg.MinGain = 10 * time.Millisecond
	}
	if cfg.MinRatio == 0 {
		cfg.MinRatio = 0.2
	}
	if cfg.Confirm == 0 {
		cfg.Confirm = 2
	}
	if cfg.HoldDown == 0 {
		cfg.HoldDown = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Selector{cfg: cfg}, nil
}

// Current returns the relay chosen last, if any.
func (s *Selector) Current() (Candidate, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return Candidate{}, false
	}
	return *s.cur, true
}

// Update takes one round of measurements (Probe's answer) and returns the
// relay to use. It fails with ErrNoCandidate when no candidate could be
// measured; the previous choice is then kept.
func (s *Selector) Update(ms []Measurement) (Choice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best, cur *Measurement
	ok := 0
	for i := range ms {
		m := &ms[i]
		if m.Err != nil {
			continue
		}
		ok++
		if best == nil || m.RTT < best.RTT {
			best = m
		}
		if s.cur != nil && m.Candidate.ID == s.cur.ID {
			cur = m
		}
	}
	if best == nil {
		return Choice{}, fmt.Errorf("%w (%d tried)", ErrNoCandidate, len(ms))
	}
	now := s.cfg.Now()
	switch {
	case s.cur == nil:
		return s.pick(best, now, fmt.Sprintf("first choice: %s, the fastest of %d measured", brief(best), ok)), nil
	case cur == nil:
		return s.pick(best, now, fmt.Sprintf("switch to %s: the current relay %s could not be measured%s",
			brief(best), s.cur.ID, failure(ms, s.cur.ID))), nil
	case best == cur:
		s.streak = 0
		return s.stay(cur, fmt.Sprintf("stay on %s: the fastest", brief(cur))), nil
	}
	gain := cur.RTT - best.RTT
	ratio := float64(gain) / float64(cur.RTT)
	faster := fmt.Sprintf("%s is faster by %s (%.0f%%)", brief(best), ms1(gain), 100*ratio)
	if gain < s.cfg.MinGain || ratio < s.cfg.MinRatio {
		s.streak = 0
		return s.stay(cur, fmt.Sprintf("stay on %s: %s, below the margin (%s and %.0f%%)",
			brief(cur), faster, ms1(s.cfg.MinGain), 100*s.cfg.MinRatio)), nil
	}
	s.streak++
	if s.streak < s.cfg.Confirm {
		return s.stay(cur, fmt.Sprintf("stay on %s: %s, round %d of %d before switching",
			brief(cur), faster, s.streak, s.cfg.Confirm)), nil
	}
	if left := s.since.Add(s.cfg.HoldDown).Sub(now); s.cfg.HoldDown > 0 && left > 0 {
		return s.stay(cur, fmt.Sprintf("stay on %s: %s, but the last switch was less than %v ago (%v left)",
			brief(cur), faster, s.cfg.HoldDown, left.Round(time.Second))), nil
	}
	return s.pick(best, now, fmt.Sprintf("switch to %s from %s: faster by %s (%.0f%%) in %d rounds",
		brief(best), brief(cur), ms1(gain), 100*ratio, s.streak)), nil
}

func (s *Selector) pick(m *Measurement, now time.Time, why string) Choice {
	c := m.Candidate
	s.cur, s.since, s.streak = &c, now, 0
	return Choice{Candidate: c, RTT: m.RTT, Switched: true, Reason: why}
}

func (s *Selector) stay(m *Measurement, why string) Choice {
	return Choice{Candidate: *s.cur, RTT: m.RTT, Reason: why}
}

// brief names a measured relay: "eu-1 (eu) 81.2 ms".
func brief(m *Measurement) string {
	if m.Candidate.Region == "" {
		return m.Candidate.ID + " " + ms1(m.RTT)
	}
	return fmt.Sprintf("%s (%s) %s", m.Candidate.ID, m.Candidate.Region, ms1(m.RTT))
}

// failure says why relay id failed in ms, if it was measured at all.
func failure(ms []Measurement, id string) string {
	for i := range ms {
		if ms[i].Candidate.ID == id && ms[i].Err != nil {
			return ": " + ms[i].Err.Error()
		}
	}
	return " (not among the candidates)"
}

// ms1 formats d in milliseconds with one decimal.
func ms1(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
