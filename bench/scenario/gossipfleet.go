package scenario

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/gossip"
)

// gossipProfile is a configuration the gossip scenario measures.
type gossipProfile struct {
	id, system string
	ours       bool
	base       func() gossip.Config
}

var gossipProfiles = []gossipProfile{
	{"ours", "gossip.LANConfig (tuned, settling)", true, gossip.LANConfig},
	{"bare", "memberlist v0.7.0 DefaultLANConfig", false, gossip.BareLANConfig},
}

func gossipProfileByID(id string) (gossipProfile, bool) {
	for _, p := range gossipProfiles {
		if p.id == id {
			return p, true
		}
	}
	return gossipProfile{}, false
}

// config is node id's configuration: on loopback, encrypted, with
// metadata the size of a real relay's.
func (p gossipProfile) config(id string, key []byte) gossip.Config {
	cfg := p.base()
	cfg.BindAddr = "127.0.0.1"
	cfg.Cluster = "bench"
	cfg.Keys = [][]byte{key}
	cfg.Meta = gossip.Meta{
		ID: id, Region: "eu-west", Software: "v0.1.0-bench", Protocol: 1, Capacity: 5000,
		WS: "wss://" + id + ".relay.example.net:8443", QUIC: id + ".relay.example.net:8443", TURN: id + ".relay.example.net:3478",
	}
	return cfg
}

// gossipFleet is a cluster of gossip nodes: most in the harness process,
// one (the hogged node) in its own.
type gossipFleet struct {
	e    *Env
	prof gossipProfile
	key  []byte
	log  *gossipLog

	mu    sync.Mutex // guards the fields below
	nodes map[string]*gossip.Cluster
	order []string // in-process ids, start order
	hog   *hogClient

	metaStop func() // stops the metadata updates
}

func gossipID(i int) string { return fmt.Sprintf("g%03d", i) }

// newGossipFleet starts n nodes, not joined: n−1 in process and, with
// hogged, the last in its own process.
func newGossipFleet(ctx context.Context, e *Env, prof gossipProfile, n int, hogged bool) (*gossipFleet, error) {
	f := &gossipFleet{e: e, prof: prof, key: make([]byte, 32), log: newGossipLog(n), nodes: map[string]*gossip.Cluster{}}
	_, _ = rand.Read(f.key)
	local := n
	if hogged {
		local--
	}
	for i := range local {
		if _, err := f.add(gossipID(i)); err != nil {
			f.Close()
			return nil, err
		}
	}
	if hogged {
		h, err := startHogNode(ctx, e, prof, gossipID(n-1), f.key, f.log)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.hog = h
	}
	return f, nil
}

// add starts an in-process node.
func (f *gossipFleet) add(id string) (*gossip.Cluster, error) {
	cfg := f.prof.config(id, f.key)
	cfg.OnEvent = func(ev gossip.Event) { f.log.record(id, ev.Type, ev.Member.Meta.ID, ev.At) }
	c, err := gossip.New(cfg)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.nodes[id] = c
	f.order = append(f.order, id)
	f.mu.Unlock()
	return c, nil
}

// ids returns every running node's id, the hogged node's included.
func (f *gossipFleet) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.order)+1)
	for _, id := range f.order {
		if _, ok := f.nodes[id]; ok {
			out = append(out, id)
		}
	}
	if f.hog != nil {
		out = append(out, f.hog.id)
	}
	return out
}

// seeds are the first three nodes' addresses.
func (f *gossipFleet) seeds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range f.order[:min(3, len(f.order))] {
		out = append(out, f.nodes[id].Addr().String())
	}
	return out
}

// coldStart makes every node join the seeds (the seeds join each other),
// the starts spread evenly over spread in random order, and returns when
// the first join began.
func (f *gossipFleet) coldStart(ctx context.Context, spread time.Duration) time.Time {
	seeds := f.seeds()
	f.mu.Lock()
	type joiner struct {
		id string
		c  *gossip.Cluster
	}
	js := make([]joiner, 0, len(f.order)+1)
	for _, id := range f.order {
		js = append(js, joiner{id, f.nodes[id]})
	}
	if f.hog != nil {
		js = append(js, joiner{f.hog.id, nil})
	}
	f.mu.Unlock()
	mrand.Shuffle(len(js), func(i, j int) { js[i], js[j] = js[j], js[i] })
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, j := range js {
		at := t0.Add(spread * time.Duration(i) / time.Duration(len(js)))
		wg.Go(func() {
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return
			}
			var own string
			if j.c != nil {
				own = j.c.Addr().String()
			}
			var to []string
			for _, s := range seeds {
				if s != own {
					to = append(to, s)
				}
			}
			if j.c == nil {
				f.hog.cmd("join %s", joinList(to))
				return
			}
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, _ = j.c.Join(jctx, to)
		})
	}
	wg.Wait()
	return t0
}

func joinList(s []string) string {
	out := ""
	for i, a := range s {
		if i > 0 {
			out += ","
		}
		out += a
	}
	return out
}

// crash stops an in-process node without leaving.
func (f *gossipFleet) crash(id string) {
	f.log.markDown(id)
	f.mu.Lock()
	c := f.nodes[id]
	delete(f.nodes, id)
	f.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// leave makes an in-process node leave (within d) and close.
func (f *gossipFleet) leave(ctx context.Context, id string, d time.Duration) error {
	f.log.markDown(id)
	f.mu.Lock()
	c := f.nodes[id]
	delete(f.nodes, id)
	f.mu.Unlock()
	if c == nil {
		return fmt.Errorf("no node %s", id)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return c.Leave(ctx)
}

// traffic sums the traffic of the given in-process nodes.
func (f *gossipFleet) traffic(ids []string) (sum gossip.Traffic, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		c, ok := f.nodes[id]
		if !ok {
			continue
		}
		t := c.Traffic()
		sum.UDPSent += t.UDPSent
		sum.UDPReceived += t.UDPReceived
		sum.TCPSent += t.TCPSent
		sum.TCPReceived += t.TCPReceived
		n++
	}
	return sum, n
}

// trafficByNode reads every in-process node's traffic.
func (f *gossipFleet) trafficByNode() map[string]gossip.Traffic {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]gossip.Traffic, len(f.nodes))
	for id, c := range f.nodes {
		out[id] = c.Traffic()
	}
	return out
}

// kbitSince is the traffic of ids since then over d, in kbit/s per node:
// sent + received, and sent alone.
func (f *gossipFleet) kbitSince(then map[string]gossip.Traffic, ids []string, d time.Duration) (total, sent float64) {
	now := f.trafficByNode()
	var in, out uint64
	n := 0
	for _, id := range ids {
		a, ok1 := then[id]
		b, ok2 := now[id]
		if !ok1 || !ok2 {
			continue
		}
		out += b.UDPSent + b.TCPSent - a.UDPSent - a.TCPSent
		in += b.UDPReceived + b.TCPReceived - a.UDPReceived - a.TCPReceived
		n++
	}
	if n == 0 || d <= 0 {
		return math.NaN(), math.NaN()
	}
	per := func(b uint64) float64 { return float64(b) * 8 / 1000 / float64(n) / d.Seconds() }
	return per(in + out), per(out)
}

// localIDs returns the running in-process nodes.
func (f *gossipFleet) localIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range f.order {
		if _, ok := f.nodes[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

// updateMeta starts updating every node's Meta.Load once per period, each
// at its own phase, as relays publishing their load would.
func (f *gossipFleet) updateMeta(ctx context.Context, period time.Duration) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	ids := f.ids()
	due := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		due[id] = time.Now().Add(time.Duration(mrand.Int64N(int64(period))))
	}
	sem := make(chan struct{}, 16)
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				for id, at := range due {
					if now.Before(at) {
						continue
					}
					due[id] = at.Add(period)
					load := uint32(mrand.IntN(5000))
					if f.hog != nil && id == f.hog.id {
						f.hog.cmd("meta %d", load)
						continue
					}
					f.mu.Lock()
					c := f.nodes[id]
					f.mu.Unlock()
					if c == nil {
						continue
					}
					select {
					case sem <- struct{}{}:
					default:
						continue // updates are hints: skip one rather than queue
					}
					wg.Go(func() {
						defer func() { <-sem }()
						m := f.prof.config(id, f.key).Meta
						m.Load = load
						uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
						defer cancel()
						_ = c.UpdateMeta(uctx, m)
					})
				}
			}
		}
	})
	f.metaStop = func() {
		cancel()
		wg.Wait()
	}
}

// procs returns the processes to sample: the harness and the hogged node.
func (f *gossipFleet) procs() []bench.Proc {
	ps := []bench.Proc{bench.Self()}
	if f.hog != nil {
		ps = append(ps, f.hog.p.Proc())
	}
	return ps
}

// Close stops everything: metadata updates, every node (in parallel), the
// hogged node's process.
func (f *gossipFleet) Close() {
	if f.metaStop != nil {
		f.metaStop()
	}
	f.mu.Lock()
	nodes := f.nodes
	f.nodes = map[string]*gossip.Cluster{}
	hog := f.hog
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range nodes {
		wg.Go(func() { _ = c.Close() })
	}
	if hog != nil {
		wg.Go(hog.Close)
	}
	wg.Wait()
}
