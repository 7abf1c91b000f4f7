package gossip

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// recorder keeps the events a node delivered.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) on(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// find returns the first event of type t about id.
func (r *recorder) find(t EventType, id string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.events, func(ev Event) bool { return ev.Type == t && ev.Member.Meta.ID == id })
	if i < 0 {
		return Event{}, false
	}
	return r.events[i], true
}

type node struct {
	*Cluster
	rec *recorder
	reg *prometheus.Registry
}

// start runs a node on 127.0.0.<i> with a kernel-picked port, LocalConfig
// and the test key; edit adjusts the config. Close is registered.
func start(t *testing.T, i int, edit func(*Config)) *node {
	t.Helper()
	n := &node{rec: &recorder{}, reg: prometheus.NewPedanticRegistry()}
	cfg := LocalConfig()
	cfg.BindAddr = fmt.Sprintf("127.0.0.%d", i)
	cfg.Meta = Meta{ID: fmt.Sprintf("r%d", i), Region: "eu-west", WS: fmt.Sprintf("wss://r%d.test:443", i), Protocol: 1, Software: "test"}
	cfg.Keys = [][]byte{testKey}
	cfg.OnEvent = n.rec.on
	cfg.Registerer = n.reg
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Meta.ID, err)
	}
	n.Cluster = c
	t.Cleanup(func() { _ = c.Close() })
	return n
}

// startCluster starts n nodes and joins them all to the first.
func startCluster(t *testing.T, first, n int) []*node {
	t.Helper()
	return startClusterWith(t, first, n, nil)
}

// startClusterWith is startCluster with edit applied to every config.
func startClusterWith(t *testing.T, first, n int, edit func(*Config)) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = start(t, first+i, edit)
	}
	seed := nodes[0].Addr().String()
	for _, nd := range nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := nd.Join(ctx, []string{seed}); err != nil {
			t.Fatalf("join %s: %v", nd.cfg.Meta.ID, err)
		}
		cancel()
	}
	for _, nd := range nodes {
		waitFor(t, 15*time.Second, fmt.Sprintf("%s sees %d members", nd.cfg.Meta.ID, n), func() bool {
			return len(alive(nd.Cluster)) == n
		})
	}
	return nodes
}

// alive returns the ids of the members in StateAlive.
func alive(c *Cluster) []string {
	var ids []string
	for _, m := range c.Members() {
		if m.State == StateAlive {
			ids = append(ids, m.Meta.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitFor polls cond until it holds or d passes; it returns how long that took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
	}
	return time.Since(start)
}

func member(c *Cluster, id string) (Member, bool) { return c.Member(id) }

// metric returns the value of the sample of family name whose labels
// include label=value ("" matches a sample without labels).
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// lint checks the registry's metrics as promtool check metrics does.
func lint(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", err, problems)
	}
}

// members returns stapes_gossip_members by state.
func members(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range []State{StateAlive, StateDead, StateLeft} {
		out[s.String()] = metric(t, reg, "stapes_gossip_members", "state", s.String())
	}
	return out
}
