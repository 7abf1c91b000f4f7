package lab

import (
	"context"
	"testing"
	"time"
)

func TestRTTThreeRegions(t *testing.T) {
	t.Parallel()
	delays := map[[2]string]time.Duration{
		{"eu", "us"}: 40 * time.Millisecond,
		{"eu", "ap"}: 120 * time.Millisecond,
		{"us", "ap"}: 90 * time.Millisecond,
		{"eu", "eu"}: 0,
	}
	spec := Spec{Regions: []Region{{Name: "eu", Hosts: 2}, {Name: "us"}, {Name: "ap"}}}
	for p, d := range delays {
		spec.Links = append(spec.Links, Link{A: p[0], B: p[1], Delay: d})
	}
	l := newTestLab(t, spec)
	t.Logf("lab %s, delayer %v", l.ID(), l.Delayer())
	for p, d := range delays {
		a, b := p[0]+"-0", p[1]+"-0"
		if a == b {
			b = p[1] + "-1"
		}
		echo := udpEcho(t, l, b)
		checkRTT(t, l, a, echo, 2*d)
	}
	_ = context.Background
}
