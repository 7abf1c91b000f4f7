package gossip

import (
	"testing"

	"github.com/hashicorp/memberlist"
)

// TestEventQueueFull: a handler that does not keep up never blocks
// memberlist; events past the queue are dropped and counted.
func TestEventQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	n := start(t, 71, func(c *Config) {
		c.EventQueue = 1
		c.OnEvent = func(Event) { <-release }
	})
	meta, _ := Meta{ID: "x", Region: "eu"}.MarshalBinary()
	d := delegate{n.Cluster}
	for range 5 {
		d.NotifyUpdate(&memberlist.Node{Name: "x", Meta: meta}) // returns at once
	}
	if got := metric(t, n.reg, "stapes_gossip_event_drops_total", "reason", dropQueueFull); got < 3 {
		t.Errorf("got %v drops, want ≥ 3", got)
	}
	d.NotifyJoin(&memberlist.Node{Name: "bad", Meta: []byte{9, 9}})
	if m, ok := n.Member("bad"); !ok || m.MetaErr == nil || m.Meta.ID != "bad" {
		t.Errorf("got %+v, %v; want a member with MetaErr and its id", m, ok)
	}
	if got := metric(t, n.reg, "stapes_gossip_meta_decode_errors_total", "", ""); got != 1 {
		t.Errorf("got %v decode errors, want 1", got)
	}
	close(release)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
