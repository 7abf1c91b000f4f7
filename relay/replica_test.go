package relay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/storage/storagetest"
)

var peerSecret = []byte("0123456789abcdef-test-secret")

// chat is a durable chat SEND with client id id.
func chat(id string) *wire.Frame {
	return &wire.Frame{Type: wire.TypeSend, ClientID: id, Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("x")}
}

// expectSeqs reads DELIVERs from c: seqs from..to, in order, once each.
func expectSeqs(t *testing.T, c *relaytest.Conn, from, to uint64, what string) {
	t.Helper()
	for want := from; want <= to; want++ {
		if d := c.NextOf(wire.TypeDeliver, 5*time.Second); d.Seq != want {
			t.Fatalf("%s: got seq %d, want %d", what, d.Seq, want)
		}
	}
}

// pair starts relays a and b in one region, replicating to each other;
// configureA, if given, adjusts a's config.
func pair(t *testing.T, configureA ...func(*relay.Config)) (a, b *relaytest.Relay, cl *relaytest.Cluster) {
	t.Helper()
	cl = &relaytest.Cluster{}
	a = relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-a", "eu", cl, peerSecret
		for _, f := range configureA {
			f(c)
		}
	}})
	b = relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-b", "eu", cl, peerSecret
		c.Auth = a.Keyring
	}})
	cl.Set(a.Peer("relay-a", "eu"))
	cl.Set(b.Peer("relay-b", "eu"))
	return a, b, cl
}

// TestReplicatedFailover: every PERSISTED message of a session whose home
// stops is on the replica; both sides resume there (the replica takes the
// session over with a higher epoch), a resent SEND is not stored twice,
// and the former home, back again, redirects instead of serving.
func TestReplicatedFailover(t *testing.T) {
	a, b, cl := pair(t)
	clin := relaytest.Dial(t, a, "ws")
	w := clin.Hello(a.Token(t, clinician("fo")), false, 0)
	if w.Epoch != 1 {
		t.Fatalf("WELCOME epoch %d, want 1", w.Epoch)
	}
	pat := relaytest.Dial(t, a, "quic")
	pat.Hello(a.Token(t, patient("fo")), false, 0)
	const n = 50
	for i := range n {
		clin.Send(chat(fmt.Sprintf("m%d", i)))
	}
	for range n {
		if p := clin.NextOf(wire.TypePersisted, 5*time.Second); p.Flags&wire.FlagDegraded != 0 {
			t.Fatalf("PERSISTED %d degraded with a live replica", p.Seq)
		}
	}
	var seen uint64
	for range 10 { // the patient has read only part of the log
		d := pat.NextOf(wire.TypeDeliver, 5*time.Second)
		seen = d.Seq
	}
	clin.Close()
	pat.Close()
	a.Stop()
	cl.Remove("relay-a")

	// Both resume on b.
	pat2 := relaytest.Dial(t, b, "ws")
	w2 := pat2.Hello(a.Token(t, patient("fo")), true, seen)
	if w2.Epoch != 2 || w2.HeadSeq != n {
		t.Fatalf("WELCOME on the replica: epoch %d head %d, want epoch 2 head %d", w2.Epoch, w2.HeadSeq, n)
	}
	expectSeqs(t, pat2, seen+1, n, "after takeover")
	clin2 := relaytest.Dial(t, b, "quic")
	clin2.Hello(a.Token(t, clinician("fo")), true, 0)
	// A resend of an already persisted message is answered with its seq.
	clin2.Send(chat("m7"))
	if p := clin2.NextOf(wire.TypePersisted, 5*time.Second); p.Seq != 8 {
		t.Fatalf("resent m7 persisted as seq %d, want 8", p.Seq)
	}
	// New messages commit on b (degraded: its region has no other relay now).
	clin2.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "new", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("y")})
	p := clin2.NextOf(wire.TypePersisted, 5*time.Second)
	if p.Seq != n+1 || p.Flags&wire.FlagDegraded == 0 {
		t.Fatalf("new message: seq %d flags %d, want seq %d degraded", p.Seq, p.Flags, n+1)
	}
	if d := pat2.NextOf(wire.TypeDeliver, 5*time.Second); d.Seq != n+1 {
		t.Fatalf("patient got seq %d, want %d", d.Seq, n+1)
	}

	// The former home comes back: it is in the cluster again, b replicates
	// to it (catching it up), and a client that reaches it is redirected.
	a.Restart(t)
	cl.Set(a.Peer("relay-a", "eu"))
	clin2.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "after", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("z")})
	if p := clin2.NextOf(wire.TypePersisted, 5*time.Second); p.Flags&wire.FlagDegraded != 0 {
		t.Fatalf("PERSISTED degraded although relay-a is back as a replica")
	}
	old := relaytest.Dial(t, a, "ws")
	defer old.Close()
	old.Send(&wire.Frame{Type: wire.TypeHello, Token: a.Token(t, patient("fo")), MinVersion: 1, MaxVersion: 1, Resume: true, LastSeq: n})
	f, err := old.Next(5 * time.Second)
	if err != nil || f.Type != wire.TypeGoaway || f.Redirect != b.QUICURL {
		t.Fatalf("HELLO at the former home: %v %+v, want GOAWAY to %s", err, f, b.QUICURL)
	}
}

// TestFormerHomeIsFenced: a home that did not notice it was replaced (the
// replica took over while the home was unreachable) cannot get another
// entry persisted or delivered: the replica refuses its replication as
// stale and the old home closes its connections with stale_epoch.
func TestFormerHomeIsFenced(t *testing.T) {
	a, b, cl := pair(t)
	clin := relaytest.Dial(t, a, "ws")
	clin.Hello(a.Token(t, clinician("fence")), false, 0)
	pat := relaytest.Dial(t, a, "ws")
	pat.Hello(a.Token(t, patient("fence")), false, 0)
	clin.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "c1", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(0, wire.Param{Name: "gain", Value: 10})})
	clin.NextOf(wire.TypePersisted, 5*time.Second)
	pat.NextOf(wire.TypeDeliver, 5*time.Second)

	// b loses sight of a (partition) and a client reaches b: b takes over.
	cl.Remove("relay-a")
	pb := relaytest.Dial(t, b, "ws")
	if w := pb.Hello(a.Token(t, patient("fence")), true, 1); w.Epoch != 2 {
		t.Fatalf("takeover epoch %d, want 2", w.Epoch)
	}
	// a still serves its connections; its next command must not go through.
	clin.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "c2", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(1, wire.Param{Name: "gain", Value: 20})})
	code, closed := clin.ClosedWith(10 * time.Second)
	if !closed || code != wire.CodeStaleEpoch {
		t.Fatalf("old home's clinician: closed %v with %v, want stale_epoch", closed, code)
	}
	if code, _ := pat.ClosedWith(5 * time.Second); code != wire.CodeStaleEpoch {
		t.Fatalf("old home's patient: %v, want stale_epoch", code)
	}
	// Nothing of c2 exists anywhere.
	for name, r := range map[string]*relaytest.Relay{"a": a, "b": b} {
		if h, err := r.Store.Head(t.Context(), "fence"); err != nil || h != 1 {
			t.Fatalf("relay %s head %d (%v), want 1: the fenced command was stored", name, h, err)
		}
	}
	// The new home goes on from seq 2 with the config head still at 1.
	cb := relaytest.Dial(t, b, "quic")
	w := cb.Hello(a.Token(t, clinician("fence")), true, 1)
	if w.ConfigVersion != 1 {
		t.Fatalf("config version on the new home %d, want 1", w.ConfigVersion)
	}
	cb.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "c3", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(1, wire.Param{Name: "gain", Value: 20})})
	if p := cb.NextOf(wire.TypePersisted, 5*time.Second); p.Seq != 2 {
		t.Fatalf("new home persisted c3 as %d, want 2", p.Seq)
	}
	if d := pb.NextOf(wire.TypeDeliver, 5*time.Second); d.Seq != 2 || d.ClientID != "c3" {
		t.Fatalf("patient on the new home got %+v", d)
	}
}

// TestPlacedSessionIsNotSplit: the control plane placed a session on relay
// a; a participant that connects first to relay b (its nearest) is sent to
// a instead of b opening a second copy of the session.
func TestPlacedSessionIsNotSplit(t *testing.T) {
	a, b, _ := pair(t)
	pc := patient("placed")
	pc.Relay = "relay-a"
	pb := relaytest.Dial(t, b, "ws")
	pb.Send(&wire.Frame{Type: wire.TypeHello, Token: a.Token(t, pc), MinVersion: 1, MaxVersion: 1})
	f, err := pb.Next(5 * time.Second)
	if err != nil || f.Type != wire.TypeGoaway || f.Redirect != a.QUICURL {
		t.Fatalf("HELLO at b for a session placed on a: %v %+v, want GOAWAY to %s", err, f, a.QUICURL)
	}
	if h, _ := b.Store.Head(t.Context(), "placed"); h != 0 || b.Server.SessionIDs() != nil && len(b.Server.SessionIDs()) > 0 {
		t.Fatalf("b opened the session")
	}
	cc := clinician("placed")
	cc.Relay = "relay-a"
	ca := relaytest.Dial(t, a, "ws")
	if w := ca.Hello(a.Token(t, cc), false, 0); w.Epoch != 1 {
		t.Fatalf("epoch %d at the placed relay", w.Epoch)
	}
}

// crashableHome starts relay-a of cluster cl (region eu, RequireReplica,
// then configure) on a crashable in-memory filesystem whose WAL syncs go
// through gate: a test holds its syncs, takes a crash clone of mem and
// restarts it there (RestartFS).
func crashableHome(t *testing.T, cl *relaytest.Cluster, configure func(*relay.Config)) (*relaytest.Relay, *vfs.MemFS, *storagetest.WALGate) {
	t.Helper()
	mem := vfs.NewCrashableMem()
	gate := &storagetest.WALGate{}
	a := relaytest.Start(t, relaytest.Options{FS: gate.Wrap(mem), Configure: func(c *relay.Config) {
		c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-a", "eu", cl, peerSecret
		c.RequireReplica = true
		if configure != nil {
			configure(c)
		}
	}})
	t.Cleanup(gate.Open) // runs before a's Close, which waits for held syncs
	return a, mem, gate
}

// TestHomeLosesUnsyncedTail: a replicating home commits its own copy of a
// batch without waiting for its fsync (the replica has synced it before
// PERSISTED). A home that crashes before that sync loses the tail of its
// log; restarted, still the owner, it fetches the tail back from its
// replica before serving: every PERSISTED message is delivered exactly
// once, in order, the device config version is the latest, and a resent
// message of the lost tail gets its original seq.
func TestHomeLosesUnsyncedTail(t *testing.T) {
	cl := &relaytest.Cluster{}
	a, mem, gate := crashableHome(t, cl, nil)
	b := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-b", "eu", cl, peerSecret
		c.Auth = a.Keyring
		c.RequireReplica = true
	}})
	cl.Set(a.Peer("relay-a", "eu"))
	cl.Set(b.Peer("relay-b", "eu"))

	clin := relaytest.Dial(t, a, "ws")
	clin.Hello(a.Token(t, clinician("tail")), false, 0)
	pat := relaytest.Dial(t, a, "quic")
	pat.Hello(a.Token(t, patient("tail")), false, 0)
	clin.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "c0", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(0, wire.Param{Name: "gain", Value: 10})})
	clin.NextOf(wire.TypePersisted, 5*time.Second) // the session's first batch: synced (it records the owner)
	pat.NextOf(wire.TypeDeliver, 5*time.Second)

	// From here the home's own syncs are held: what it commits is on its
	// replica's disk and only in its own memory.
	gate.Close()
	const chats = 20
	for i := range chats {
		clin.Send(chat(fmt.Sprintf("m%d", i)))
	}
	clin.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "c1", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(1, wire.Param{Name: "gain", Value: 12})})
	head := uint64(1 + chats + 1)
	for range chats + 1 {
		if p := clin.NextOf(wire.TypePersisted, 5*time.Second); p.Flags&wire.FlagDegraded != 0 {
			t.Fatalf("PERSISTED %d degraded with a live replica", p.Seq)
		}
	}
	seen := uint64(1)
	for range 5 {
		seen = pat.NextOf(wire.TypeDeliver, 5*time.Second).Seq
	}

	// The home crashes: only what it synced is on its disk.
	clone := mem.CrashClone(vfs.CrashCloneCfg{})
	clin.Close()
	pat.Close()
	gate.Open()
	a.RestartFS(t, clone)
	if h, err := a.Store.Head(t.Context(), "tail"); err != nil || h != 1 {
		t.Fatalf("after the crash the home's head is %d (%v), want 1: its copies were synced after all", h, err)
	}

	// Still the owner, it gets the tail back from b before serving.
	pat2 := relaytest.Dial(t, a, "quic")
	w := pat2.Hello(a.Token(t, patient("tail")), true, seen)
	if w.Epoch != 1 || w.HeadSeq != head || w.ConfigVersion != 2 {
		t.Fatalf("WELCOME after the crash: epoch %d head %d config %d, want epoch 1 head %d config 2", w.Epoch, w.HeadSeq, w.ConfigVersion, head)
	}
	expectSeqs(t, pat2, seen+1, head, "after the crash")
	clin2 := relaytest.Dial(t, a, "ws")
	clin2.Hello(a.Token(t, clinician("tail")), true, 0)
	clin2.Send(chat("m7"))
	if p := clin2.NextOf(wire.TypePersisted, 5*time.Second); p.Seq != 9 {
		t.Fatalf("resent m7 persisted as seq %d, want 9", p.Seq)
	}
	clin2.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "c2", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(2, wire.Param{Name: "gain", Value: 14})})
	if p := clin2.NextOf(wire.TypePersisted, 5*time.Second); p.Seq != head+1 {
		t.Fatalf("c2 persisted as seq %d, want %d", p.Seq, head+1)
	}
	if d := pat2.NextOf(wire.TypeDeliver, 5*time.Second); d.Seq != head+1 || d.ClientID != "c2" {
		t.Fatalf("patient got %+v, want c2 at seq %d", d, head+1)
	}
	if d, err := pat2.Next(300 * time.Millisecond); err == nil && d.Type == wire.TypeDeliver {
		t.Fatalf("a second DELIVER after c2: seq %d", d.Seq)
	}
	b.WaitHead(t, "tail", head+1)
}

// TestCrashedHomeWaitsForItsReplica: a home restarted after a crash that
// took its unsynced tail may not serve its session from what is left
// while its recorded replica is away — not even with another relay of the
// region ready to become the replica. Once the replica is back, the tail
// comes back with it.
func TestCrashedHomeWaitsForItsReplica(t *testing.T) {
	cl := &relaytest.Cluster{}
	a, mem, gate := crashableHome(t, cl, func(c *relay.Config) { c.ReplicaTimeout = 500 * time.Millisecond })
	others := map[string]*relaytest.Relay{}
	for _, id := range []string{"relay-b", "relay-c"} {
		others[id] = relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
			c.RelayID, c.Region, c.Cluster, c.PeerSecret = id, "eu", cl, peerSecret
			c.Auth = a.Keyring
			c.RequireReplica = true
		}})
		cl.Set(others[id].Peer(id, "eu"))
	}
	cl.Set(a.Peer("relay-a", "eu"))

	clin := relaytest.Dial(t, a, "ws")
	clin.Hello(a.Token(t, clinician("wait")), false, 0)
	clin.Send(chat("first"))
	clin.NextOf(wire.TypePersisted, 5*time.Second)
	var replica, spare *relaytest.Relay
	for _, r := range others {
		if h, _ := r.Store.Head(t.Context(), "wait"); h == 1 {
			replica = r
		} else {
			spare = r
		}
	}
	if replica == nil || spare == nil {
		t.Fatal("the first batch is not on exactly one of the other relays")
	}
	gate.Close()
	const n = 10
	for i := range n {
		clin.Send(chat(fmt.Sprintf("m%d", i)))
	}
	for range n {
		clin.NextOf(wire.TypePersisted, 5*time.Second)
	}
	clone := mem.CrashClone(vfs.CrashCloneCfg{})
	clin.Close()
	gate.Open()
	replica.Stop() // away while the home restarts
	a.RestartFS(t, clone)

	pat := relaytest.Dial(t, a, "ws")
	pat.Send(&wire.Frame{Type: wire.TypeHello, Token: a.Token(t, patient("wait")), MinVersion: 1, MaxVersion: 1, Resume: true})
	if f, err := pat.Next(10 * time.Second); err != nil || f.Type != wire.TypeError || f.Code != wire.CodeUnavailable {
		t.Fatalf("HELLO at the crashed home with its replica away: %v %+v, want ERROR unavailable", err, f)
	}
	if h, _ := spare.Store.Head(t.Context(), "wait"); h != 0 {
		t.Fatalf("the spare relay got %d entries of the truncated log", h)
	}
	if h, _ := a.Store.Head(t.Context(), "wait"); h != 1 {
		t.Fatalf("the crashed home's head is %d, want 1 (its tail was unsynced)", h)
	}

	replica.Restart(t)
	pat2 := relaytest.Dial(t, a, "ws")
	if w := pat2.Hello(a.Token(t, patient("wait")), true, 0); w.HeadSeq != n+1 || w.Epoch != 1 {
		t.Fatalf("WELCOME once the replica is back: head %d epoch %d, want head %d epoch 1", w.HeadSeq, w.Epoch, n+1)
	}
	expectSeqs(t, pat2, 1, n+1, "once the replica is back")
}

// TestPeerLinkGauge: stapes_relay_peer_link_up shows each peer's link,
// labelled by relay id: 1 while it answers, 0 once it stopped answering.
func TestPeerLinkGauge(t *testing.T) {
	cl := &relaytest.Cluster{}
	reg := prometheus.NewRegistry()
	a := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-a", "eu", cl, peerSecret
		c.Registerer = reg
		c.ReplicaTimeout = 300 * time.Millisecond
	}})
	b := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.RelayID, c.Region, c.Cluster, c.PeerSecret = "relay-b", "eu", cl, peerSecret
		c.Auth = a.Keyring
	}})
	cl.Set(a.Peer("relay-a", "eu"))
	cl.Set(b.Peer("relay-b", "eu"))
	link := func() float64 { return counter(t, reg, "stapes_relay_peer_link_up", "peer", "relay-b") }
	deadline := time.Now().Add(10 * time.Second)
	for link() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the link to relay-b never showed up")
		}
		time.Sleep(20 * time.Millisecond) // polling a metric
	}
	b.Stop()
	// A commit tries the replica, which no longer answers.
	clin := relaytest.Dial(t, a, "ws")
	clin.Hello(a.Token(t, clinician("gauge")), false, 0)
	clin.Send(chat("g1"))
	if p := clin.NextOf(wire.TypePersisted, 10*time.Second); p.Flags&wire.FlagDegraded == 0 {
		t.Fatal("PERSISTED not degraded without a replica")
	}
	if v := link(); v != 0 {
		t.Fatalf("link to a stopped relay-b = %v, want 0", v)
	}
}

// TestHomeDiesBeforeItsFirstCommit: a session's home dies after it
// welcomed both sides but before anything was committed (static
// membership: the dead home is still listed as a member). The replica
// learned of the session before the first WELCOME, so the clients, who
// have seen epoch 1, find the session there (at epoch 2) instead of being
// turned away by every relay until the home comes back; the first
// command then flows.
func TestHomeDiesBeforeItsFirstCommit(t *testing.T) {
	cl := &relaytest.Cluster{}
	relays := map[string]*relaytest.Relay{}
	var a *relaytest.Relay
	for _, id := range []string{"relay-a", "relay-b", "relay-c"} {
		r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
			c.RelayID, c.Region, c.Cluster, c.PeerSecret = id, "eu", cl, peerSecret
			c.RequireReplica = true
			if a != nil {
				c.Auth = a.Keyring
			}
		}})
		if a == nil {
			a = r
		}
		relays[r.QUICURL] = r
		cl.Set(r.Peer(id, "eu"))
	}
	clin := relaytest.Dial(t, a, "ws")
	if w := clin.Hello(a.Token(t, clinician("early")), false, 0); w.Epoch != 1 {
		t.Fatalf("WELCOME epoch %d, want 1", w.Epoch)
	}
	pat := relaytest.Dial(t, a, "ws")
	pat.Hello(a.Token(t, patient("early")), false, 0)
	clin.Close()
	pat.Close()
	a.Stop()

	// rejoin connects a client that has seen epoch 1 (over WebSocket:
	// no class streams to open) to a surviving relay, following at most
	// one redirect.
	first := relays[otherThan(a, relays)]
	rejoin := func(tok []byte) *relaytest.Conn {
		t.Helper()
		r := first
		for hop := 0; ; hop++ {
			c := relaytest.Dial(t, r, "ws")
			c.Send(&wire.Frame{Type: wire.TypeHello, Token: tok, MinVersion: 1, MaxVersion: 1, Resume: true, Epoch: 1})
			f, err := c.Next(10 * time.Second)
			if err == nil && f.Type == wire.TypeWelcome {
				if f.Epoch != 2 {
					t.Fatalf("WELCOME after the home died: epoch %d, want 2", f.Epoch)
				}
				return c
			}
			next, ok := relays[f.Redirect]
			if err != nil || !ok || hop > 0 {
				t.Fatalf("HELLO after the home died: %v %+v, want WELCOME (after at most one redirect)", err, f)
			}
			c.Close()
			r = next
		}
	}
	pat2 := rejoin(a.Token(t, patient("early")))
	clin2 := rejoin(a.Token(t, clinician("early")))
	clin2.Send(chat("first"))
	if p := clin2.NextOf(wire.TypePersisted, 5*time.Second); p.Seq != 1 || p.Flags&wire.FlagDegraded != 0 {
		t.Fatalf("first command: PERSISTED seq %d flags %d, want seq 1 replicated", p.Seq, p.Flags)
	}
	expectSeqs(t, pat2, 1, 1, "first command")
}

// otherThan returns the client URL of a relay of rs other than a.
func otherThan(a *relaytest.Relay, rs map[string]*relaytest.Relay) string {
	for url := range rs {
		if url != a.QUICURL {
			return url
		}
	}
	return ""
}
