package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/internal/freeport"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// node is one relayd child of a cluster test, restartable on the same
// ports and data directory.
type node struct {
	t    *testing.T
	id   string
	addr string // client TCP+UDP
	args []string
	c    *child
}

// clusterFiles writes a shared TLS certificate (so clients trust every
// node across restarts) and a peer secret.
func clusterFiles(t *testing.T, dir string) (certFile, keyFile, secretFile string, tc *tls.Config) {
	t.Helper()
	cert, err := relay.SelfSigned("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, secretFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "peer-secret")
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	write(secretFile, []byte("cluster-test-secret-0123456789\n"))
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return certFile, keyFile, secretFile, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

// freeUDP returns a free UDP port on loopback, below the ephemeral range
// (a restarted node gets it back).
func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := freeport.UDP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func freePair(t *testing.T) string {
	t.Helper()
	tcp, udp, err := relaytest.ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	defer udp.Close()
	return tcp.Addr().String()
}

// start runs the node and waits until it accepts connections.
func (n *node) start(tc *tls.Config) {
	n.t.Helper()
	cmd := exec.Command(os.Args[0], n.args...)
	cmd.Env = append(os.Environ(), "RELAYD_CHILD=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	c := &child{cmd: cmd, addr: n.addr, tls: tc, ops: make(chan string, 1), exit: make(chan error, 1)}
	go c.watch(stderr)
	n.t.Cleanup(c.kill)
	n.c = c
	// Generous: under the race detector on a loaded 2-core machine a
	// start can take several seconds (a bounded poll, not a speed check).
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if conn, err := relaytest.TryDial(n.addr, tc, "ws"); err == nil {
			conn.Close()
			return
		}
		time.Sleep(20 * time.Millisecond) // polling a child process for readiness
	}
	n.t.Fatalf("relayd %s did not come up within a minute", n.id)
}

// TestFailoverUnderSIGKILL is issue 6's acceptance 3 on real processes:
// three relays of a region (static membership) replicate each session to
// one other, refusing to acknowledge anything unreplicated; a clinician streams config
// commands to a simulated hearing aid that applies them, both through the
// client SDK; the home relay is SIGKILLed 20 times (then restarted). Both
// sides resume on the replica every time; every PERSISTED command is
// applied exactly once and nothing is applied twice. The time from each
// kill to both sides resumed is logged (its p99 is a benchmark figure).
func TestFailoverUnderSIGKILL(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 4
	}
	nodes, signer, tc, urls := startRegion(t, "relay-a", "relay-b", "relay-c")
	mint := func(role, subject string) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) {
			return signer.Sign(token.Claims{Tenant: "t1", Subject: subject, Role: role, Session: "fo", Device: "HA-1", Model: "m1",
				Expiry: time.Now().Add(time.Hour).Unix(), IssuedAt: time.Now().Unix(), ID: subject})
		}
	}
	newClient := func(role, subject string) *client.Client {
		c, err := client.New(client.Config{URLs: urls, Token: mint(role, subject), Session: "fo", TLS: tc,
			BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond, PingInterval: time.Second, MaxPending: 64})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	pat := newClient("patient", "p1")
	clin := newClient("clinician", "c1")
	// welcomes records when each client was admitted with which epoch.
	type welcome struct {
		at    time.Time
		epoch uint64
		url   string
	}
	var wmu sync.Mutex
	welcomes := map[*client.Client][]welcome{}
	for _, c := range []*client.Client{pat, clin} {
		go func() {
			for ev := range c.Events() {
				if ev.Welcome != nil {
					wmu.Lock()
					welcomes[c] = append(welcomes[c], welcome{time.Now(), ev.Welcome.Epoch, ev.Welcome.URL})
					wmu.Unlock()
				}
			}
		}()
	}
	// firstWelcome returns when c was first admitted with an epoch above
	// epoch on another relay than from.
	firstWelcome := func(c *client.Client, epoch uint64, from string) (time.Time, bool) {
		wmu.Lock()
		defer wmu.Unlock()
		for _, w := range welcomes[c] {
			if w.epoch > epoch && w.url != from {
				return w.at, true
			}
		}
		return time.Time{}, false
	}

	// The simulated hearing aid: applies each config command once, in seq
	// order, and acks applied.
	var mu sync.Mutex
	applied := map[string]uint64{} // command (client id) → seq applied at
	var appliedSeqs []uint64
	dup := ""
	patDone := make(chan struct{})
	go func() {
		defer close(patDone)
		for d := range pat.Deliveries() {
			if d.Kind != wire.KindConfig {
				continue
			}
			mu.Lock()
			if _, twice := applied[d.ClientID]; twice && dup == "" {
				dup = fmt.Sprintf("%s applied twice (seq %d and %d)", d.ClientID, applied[d.ClientID], d.Seq)
			}
			applied[d.ClientID] = d.Seq
			appliedSeqs = append(appliedSeqs, d.Seq)
			mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = pat.Ack(ctx, d.Seq, wire.StageApplied, "")
			cancel()
		}
	}()

	// The clinician streams commands with the right base versions.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var sendMu sync.Mutex
	var sents []*client.Sent
	stop := make(chan struct{})
	sendDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				sendDone <- nil
				return
			default:
			}
			payload := wire.AppendConfig(nil, &wire.Config{BaseVersion: uint64(i), Params: []wire.Param{{Name: "gain", Value: int64(i % 2 * 10)}}})
			s, err := clin.SendWithID(ctx, fmt.Sprintf("cmd-%d", i), wire.KindConfig, payload, true)
			if err != nil {
				sendDone <- err
				return
			}
			sendMu.Lock()
			sents = append(sents, s)
			sendMu.Unlock()
		}
	}()

	homeOf := func(c *client.Client) (string, uint64) {
		w, ok := c.Welcome()
		if !ok {
			return "", 0
		}
		return w.URL, w.Epoch
	}
	var resumeTimes []time.Duration
	for k := range kills {
		// Let commands flow for a random while, on a settled home.
		time.Sleep(randDuration(100*time.Millisecond, 500*time.Millisecond))
		var home string
		var epoch uint64
		settle := time.Now().Add(20 * time.Second)
		for {
			hc, ec := homeOf(clin)
			hp, ep := homeOf(pat)
			if hc != "" && hc == hp && ec == ep {
				home, epoch = hc, ec
				break
			}
			if time.Now().After(settle) {
				t.Fatalf("kill %d: clients not on one home: %s/%d vs %s/%d", k, hc, ec, hp, ep)
			}
			time.Sleep(5 * time.Millisecond)
		}
		vi := slices.Index(urls, home)
		if vi < 0 {
			t.Fatalf("home %q is none of %v", home, urls)
		}
		victim := nodes[vi]
		t.Logf("kill %d: %s (home at epoch %d)", k, victim.id, epoch)
		killed := time.Now()
		victim.c.kill()
		deadline := killed.Add(30 * time.Second)
		for {
			tc1, ok1 := firstWelcome(clin, epoch, home)
			tp, ok2 := firstWelcome(pat, epoch, home)
			if ok1 && ok2 {
				resumeTimes = append(resumeTimes, max(tc1.Sub(killed), tp.Sub(killed)))
				break
			}
			if time.Now().After(deadline) {
				wmu.Lock()
				t.Logf("clinician: err %v, welcomes %+v", clin.Err(), welcomes[clin])
				t.Logf("patient: err %v, welcomes %+v", pat.Err(), welcomes[pat])
				wmu.Unlock()
				t.Fatalf("kill %d of %s: clients did not resume elsewhere", k, victim.id)
			}
			time.Sleep(5 * time.Millisecond)
		}
		victim.start(tc) // back as the replica
	}
	close(stop)
	if err := <-sendDone; err != nil {
		t.Fatalf("sending: %v", err)
	}
	// Every command ends applied once.
	sendMu.Lock()
	all := slices.Clone(sents)
	sendMu.Unlock()
	for _, s := range all {
		r, err := s.Final(ctx)
		if err != nil {
			for _, n := range nodes {
				n.c.kill()
				dumpStore(t, n)
			}
			t.Fatalf("%s: %v", s.ClientID(), err)
		}
		if r.Stage != wire.StageApplied {
			t.Fatalf("%s ended %v", s.ClientID(), r.Stage)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if dup != "" {
		t.Fatal(dup)
	}
	for _, s := range all {
		seq, _, _ := s.Persisted(ctx)
		if applied[s.ClientID()] != seq {
			t.Fatalf("%s persisted as seq %d, applied at %d", s.ClientID(), seq, applied[s.ClientID()])
		}
	}
	if !slices.IsSorted(appliedSeqs) {
		t.Fatalf("commands applied out of seq order")
	}
	slices.Sort(resumeTimes)
	t.Logf("%d kills, %d commands applied exactly once; kill → both resumed on the replica: min %v, median %v, max %v (all: %v)", kills, len(all),
		resumeTimes[0].Round(time.Millisecond), resumeTimes[len(resumeTimes)/2].Round(time.Millisecond), resumeTimes[len(resumeTimes)-1].Round(time.Millisecond), resumeTimes)
}

// startRegion starts relayd processes with the given ids as one region
// (eu) of a static cluster that replicates with --require-replica, and
// returns them (in order), the token signer, a TLS config that trusts
// them, and their client URLs (WebSocket).
func startRegion(t *testing.T, ids ...string) (nodes []*node, signer *token.Signer, tc *tls.Config, urls []string) {
	t.Helper()
	dir, keyring, signer, _ := childSetup(t)
	certFile, keyFile, secretFile, tc := clusterFiles(t, dir)
	peerAddr := map[string]string{}
	for _, id := range ids {
		n := &node{t: t, id: id, addr: freePair(t)}
		peerAddr[id] = freeUDP(t)
		nodes = append(nodes, n)
	}
	var peers []string
	for _, n := range nodes {
		peers = append(peers, fmt.Sprintf("%s@eu@%s@wss://%s%s", n.id, peerAddr[n.id], n.addr, relay.WSPath))
	}
	for _, n := range nodes {
		n.args = []string{"--listen", n.addr, "--ops", "127.0.0.1:0", "--data", filepath.Join(dir, n.id), "--keyring", keyring,
			"--tls-cert", certFile, "--tls-key", keyFile, "--relay-id", n.id, "--region", "eu", "--log-level", failoverLogLevel(),
			"--peer-listen", peerAddr[n.id], "--peer-secret-file", secretFile, "--peers", strings.Join(peers, ","),
			"--require-replica", "--self-url", "wss://" + n.addr + relay.WSPath}
		n.start(tc)
		urls = append(urls, "wss://"+n.addr+relay.WSPath)
	}
	return nodes, signer, tc, urls
}

func failoverLogLevel() string {
	if l := os.Getenv("STAPES_TEST_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}

// dumpStore logs a stopped node's view of the session (diagnostics).
func dumpStore(t *testing.T, n *node) {
	dir := ""
	for i, a := range n.args {
		if a == "--data" {
			dir = n.args[i+1]
		}
	}
	st, err := storage.Open(dir, storage.Options{})
	if err != nil {
		t.Logf("%s: %v", n.id, err)
		return
	}
	defer st.Close()
	head, _ := st.Head(context.Background(), "fo")
	owner, _, _ := st.Meta(context.Background(), "owner/fo")
	dev, _, _ := st.Meta(context.Background(), "device/t1/HA-1")
	sd, _, _ := st.Meta(context.Background(), "sessdev/fo")
	var applied, devHead uint64
	if len(dev) > 0 {
		k, m := binary.Uvarint(dev)
		a, _ := wire.DecodeConfig(dev[m : m+int(k)])
		h, _ := wire.DecodeConfig(dev[m+int(k):])
		applied, devHead = a.BaseVersion, h.BaseVersion
	}
	t.Logf("%s: head %d, owner epoch %d (%q), device applied %d head %d, sessdev %q", n.id, head, binary.BigEndian.Uint64(append(owner, make([]byte, 8)...)), owner[min(8, len(owner)):], applied, devHead, sd)
}
