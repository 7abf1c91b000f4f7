package main

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stapes-relay/stapes/gossip"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/client"
)

// meshOptions are the flags of the relay cluster: region, gossip
// membership, and relay-to-relay links for replication.
type meshOptions struct {
	region         string
	peerListen     string
	peerAdvertise  string
	peerSecretFile string
	selfURL        string
	requireReplica bool
	syncHome       bool
	forward        string
	staticPeers    string
	gossipListen   string
	gossipAdv      string
	gossipSeeds    string
	gossipKeyFile  string
	gossipProfile  string
	gossipName     string
}

func meshFlags(fs *flag.FlagSet) *meshOptions {
	m := &meshOptions{}
	fs.StringVar(&m.region, "region", "default", "region this relay serves (replicas are chosen within it)")
	fs.StringVar(&m.peerListen, "peer-listen", "", "UDP address for relay-to-relay links (replication); empty: no replication")
	fs.StringVar(&m.peerAdvertise, "peer-advertise", "", "host:port other relays reach --peer-listen at (default: --peer-listen, 127.0.0.1 for an unspecified host)")
	fs.StringVar(&m.peerSecretFile, "peer-secret-file", "", "file with the cluster's relay-to-relay secret (≥ 16 bytes; the same on every relay), required with --peer-listen")
	fs.StringVar(&m.selfURL, "self-url", "", "URL clients are redirected to for sessions homed here (default quic://ADVERTISE)")
	fs.BoolVar(&m.requireReplica, "require-replica", false, "refuse durable messages when no replica is reachable instead of acknowledging them degraded")
	fs.BoolVar(&m.syncHome, "sync-home", false, "fsync the home's own copy of a replicated batch before PERSISTED too (default: PERSISTED waits for the replica's fsync; the home commits its copy after the replica has it and syncs it in the background)")
	fs.StringVar(&m.forward, "forward", "region", "serve a client whose session lives on another relay through the relay-to-relay link (region: when that relay is in another region, else redirect; always; never: always redirect)")
	fs.StringVar(&m.staticPeers, "peers", "", "static cluster instead of gossip: comma-separated id@region@peer-host:port@client-url")
	fs.StringVar(&m.gossipListen, "gossip-listen", "", "address for gossip membership (UDP and TCP); empty: no gossip")
	fs.StringVar(&m.gossipAdv, "gossip-advertise", "", "host:port other relays reach --gossip-listen at")
	fs.StringVar(&m.gossipSeeds, "gossip-seeds", "", "comma-separated host:port of relays to join (default, with --control-url: the gossip addresses other relays published to the control plane)")
	fs.StringVar(&m.gossipKeyFile, "gossip-key-file", "", "file with the gossip encryption key (hex, 16/24/32 bytes); without it gossip is plaintext (local development only)")
	fs.StringVar(&m.gossipProfile, "gossip-profile", "lan", "gossip timing: local, lan or wan")
	fs.StringVar(&m.gossipName, "gossip-cluster", "stapes", "deployment name; gossip from other names is refused")
	return m
}

func (m *meshOptions) validate() error {
	if m.peerListen != "" && m.peerSecretFile == "" {
		return errors.New("--peer-listen needs --peer-secret-file (the same secret on every relay; create one with 'head -c 32 /dev/urandom | xxd -p > FILE')")
	}
	if m.staticPeers != "" && m.gossipListen != "" {
		return errors.New("--peers and --gossip-listen exclude each other: the cluster is either static or gossiped")
	}
	if (m.staticPeers != "" || m.gossipListen != "") && m.peerListen == "" {
		return errors.New("a cluster (--peers or --gossip-listen) needs --peer-listen for replication")
	}
	switch relay.ForwardMode(m.forward) {
	case relay.ForwardRegion, relay.ForwardAlways, relay.ForwardNever:
	default:
		return fmt.Errorf("--forward %q: want region, always or never", m.forward)
	}
	switch m.gossipProfile {
	case "local", "lan", "wan":
	default:
		return fmt.Errorf("--gossip-profile %q: want local, lan or wan", m.gossipProfile)
	}
	if _, err := parsePeers(m.staticPeers); err != nil {
		return err
	}
	return nil
}

func parsePeers(s string) (relay.StaticCluster, error) {
	var out relay.StaticCluster
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		f := strings.SplitN(item, "@", 4)
		if len(f) != 4 || f[0] == "" || f[1] == "" || f[2] == "" {
			return nil, fmt.Errorf("--peers entry %q: want id@region@peer-host:port@client-url", item)
		}
		out = append(out, relay.Peer{ID: f[0], Region: f[1], Addr: f[2], URL: f[3]})
	}
	return out, nil
}

// mesh is the running cluster side of relayd.
type mesh struct {
	o        *meshOptions
	self     string
	log      *slog.Logger
	peerUDP  net.PacketConn
	peerAddr string
	gossip   *gossip.Cluster
	static   relay.StaticCluster
	metaMu   sync.Mutex // guards meta and drained; serialises metadata updates
	meta     gossip.Meta
	drained  bool // announceDraining was called: draining from now on
	// seedsFrom, when set (relayd has a control plane), gives gossip
	// seeds from the control plane's relay map if --gossip-seeds is empty.
	seedsFrom func() []string
	stop      context.CancelFunc
	wg        sync.WaitGroup

	mu   sync.Mutex            // guards the field below
	gone map[string]goneMember // relays that left or failed, by id, until they come back or goneTTL passes
}

// goneMember is a relay gossip reported leaving or failing.
type goneMember struct {
	m  gossip.Member // State is StateLeft or StateDead
	at time.Time
}

// goneTTL is how long the relay map lists a relay that left or failed.
const goneTTL = 10 * time.Minute

// startMesh opens the peer listener and joins gossip (when configured).
// clientAddr is where clients reach this relay (host:port), wsURL its
// WebSocket URL; quic says whether it serves QUIC on clientAddr.
func startMesh(o *meshOptions, relayID, clientAddr, wsURL string, quic bool, reg prometheus.Registerer, log *slog.Logger) (*mesh, error) {
	m := &mesh{o: o, self: relayID, log: log.With("component", "mesh"), gone: map[string]goneMember{}}
	if o.peerListen == "" {
		return m, nil
	}
	udp, err := net.ListenPacket("udp", o.peerListen)
	if err != nil {
		return nil, fmt.Errorf("listening on --peer-listen %s: %w", o.peerListen, err)
	}
	m.peerUDP = udp
	m.peerAddr = o.peerAdvertise
	if m.peerAddr == "" {
		m.peerAddr = advertised(udp.LocalAddr().String())
	}
	quicAddr := ""
	if quic {
		quicAddr = clientAddr
	}
	if o.selfURL == "" {
		o.selfURL = clientURL(quicAddr, wsURL)
	}
	if m.static, err = parsePeers(o.staticPeers); err != nil {
		udp.Close()
		return nil, err
	}
	if o.gossipListen == "" {
		return m, nil
	}
	cfg := gossip.LANConfig()
	switch o.gossipProfile {
	case "local":
		cfg = gossip.LocalConfig()
	case "wan":
		cfg = gossip.WANConfig()
	}
	host, port, err := net.SplitHostPort(o.gossipListen)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("--gossip-listen %q: %w", o.gossipListen, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	cfg.BindAddr = host
	fmt.Sscan(port, &cfg.BindPort)
	if o.gossipAdv != "" {
		ah, ap, err := net.SplitHostPort(o.gossipAdv)
		if err != nil {
			udp.Close()
			return nil, fmt.Errorf("--gossip-advertise %q: %w", o.gossipAdv, err)
		}
		cfg.AdvertiseAddr = ah
		fmt.Sscan(ap, &cfg.AdvertisePort)
	} else if host == "0.0.0.0" {
		cfg.AdvertiseAddr = "127.0.0.1"
	}
	cfg.Cluster = o.gossipName
	if o.gossipKeyFile != "" {
		raw, err := os.ReadFile(o.gossipKeyFile)
		if err != nil {
			udp.Close()
			return nil, fmt.Errorf("reading --gossip-key-file: %w", err)
		}
		key, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
			udp.Close()
			return nil, errors.New("--gossip-key-file must hold 16, 24 or 32 bytes in hex")
		}
		cfg.Keys = [][]byte{key}
	} else {
		cfg.Plaintext = true
		log.Warn("gossip is not encrypted (no --gossip-key-file); use this for local development only")
	}
	m.meta = gossip.Meta{ID: relayID, Region: o.region, QUIC: quicAddr, WS: wsURL, Peer: m.peerAddr, Software: "dev", Protocol: 1}
	cfg.Meta = m.meta
	cfg.OnEvent = m.onEvent
	cfg.Logger = log
	cfg.Registerer = reg
	g, err := gossip.New(cfg)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("gossip: %w", err)
	}
	m.gossip = g
	return m, nil
}

// advertised turns a listen address into one others can reach: an
// unspecified host becomes 127.0.0.1 (not "localhost", which may resolve
// to ::1 where nothing listens). The one derivation for client, peer and
// control-plane addresses.
func advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// configure sets the relay config's cluster fields.
func (m *mesh) configure(cfg *relay.Config, secret []byte) {
	cfg.Region = m.o.region
	if m.peerUDP == nil {
		return
	}
	cfg.PeerSecret = secret
	cfg.SelfURL = m.o.selfURL
	cfg.RequireReplica = m.o.requireReplica
	cfg.SyncHome = m.o.syncHome
	cfg.Forward = relay.ForwardMode(m.o.forward)
	if m.gossip != nil {
		cfg.Cluster = m
	} else {
		cfg.Cluster = m.static
	}
}

// Peers implements relay.Cluster from gossip: the alive members that have
// a peer address.
func (m *mesh) Peers() []relay.Peer {
	var out []relay.Peer
	for _, mb := range m.gossip.Members() {
		if mb.State != gossip.StateAlive || mb.MetaErr != nil || mb.Meta.Peer == "" || mb.Meta.Draining {
			continue
		}
		out = append(out, relay.Peer{ID: mb.Meta.ID, Region: mb.Meta.Region, Addr: mb.Meta.Peer, URL: clientURL(mb.Meta.QUIC, mb.Meta.WS)})
	}
	return out
}

// clientURL is the URL clients are sent to for a relay: QUIC when it
// serves QUIC, else WebSocket.
func clientURL(quicAddr, wsURL string) string {
	if quicAddr != "" {
		return "quic://" + quicAddr
	}
	return wsURL
}

// onEvent keeps the relays that left or failed for the relay map (gossip
// lists live members only). Called by gossip, one event at a time.
func (m *mesh) onEvent(ev gossip.Event) {
	id := ev.Member.Meta.ID
	m.mu.Lock()
	switch ev.Type {
	case gossip.EventLeave, gossip.EventFailed:
		m.gone[id] = goneMember{m: ev.Member, at: ev.At}
	case gossip.EventJoin, gossip.EventUpdate:
		delete(m.gone, id)
	}
	m.mu.Unlock()
	if ev.Type != gossip.EventUpdate && !ev.Member.Local {
		m.log.Info("relay "+ev.Type.String(), "relay", id, "region", ev.Member.Meta.Region)
	}
}

// startWith serves peer links (with a self-signed certificate when the
// relay has no TLS: peers authenticate by the secret) and keeps gossip
// metadata current.
func (m *mesh) startWith(srv *relay.Server, tlsConf *tls.Config) error {
	if m.peerUDP != nil && tlsConf == nil {
		cert, err := relay.SelfSigned("127.0.0.1", "localhost")
		if err != nil {
			return err
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	}
	m.start(srv, tlsConf)
	return nil
}

// start serves peer links and keeps gossip metadata current.
func (m *mesh) start(srv *relay.Server, tlsConf *tls.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	if m.peerUDP != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := srv.ServePeers(m.peerUDP, tlsConf); err != nil && !errors.Is(err, relay.ErrClosed) {
				m.log.Error("peer listener stopped", "err", err)
			}
		}()
	}
	if m.gossip == nil {
		return
	}
	// JoinUntilStable skips our own address among the seeds (every relay
	// may be given the same list) and retries until one answers; metadata
	// (load, draining) is kept current meanwhile.
	if seeds := splitList(m.o.gossipSeeds); len(seeds) > 0 {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.join(ctx, seeds)
		}()
	} else if m.seedsFrom != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.joinFromMap(ctx)
		}()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			m.updateMeta(ctx, uint32(srv.Load()), !srv.Ready())
		}
	}()
}

// join joins the cluster through seeds and reports how it went. It
// reports whether some seed answered.
func (m *mesh) join(ctx context.Context, seeds []string) bool {
	n, err := m.gossip.JoinUntilStable(ctx, seeds)
	switch {
	case ctx.Err() != nil:
	case err != nil && n == 0:
		m.log.Error("joining the cluster failed", "seeds", len(seeds), "err", err)
	case err != nil:
		m.log.Warn("joined the cluster; member list not settled yet", "contacted", n, "err", err)
	default:
		m.log.Info("joined the cluster", "contacted", n, "members", len(m.gossip.Members()))
	}
	return n > 0
}

// joinFromMap joins through the gossip addresses other relays published
// to the control plane, re-reading the relay map until a seed answers or
// another relay has joined this one (the first relay of a deployment
// has nobody to join).
func (m *mesh) joinFromMap(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if len(m.gossip.Members()) > 1 {
			return
		}
		if seeds := m.seedsFrom(); len(seeds) > 0 {
			jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ok := m.join(jctx, seeds)
			cancel()
			if ok {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// gossipSeeds returns the gossip addresses of the other healthy relays of
// a control-plane relay map (JSON, as GET /v1/relay/map answers).
func gossipSeeds(relayMap []byte, self string) []string {
	var m client.RelayMap
	if len(relayMap) == 0 || json.Unmarshal(relayMap, &m) != nil {
		return nil
	}
	var out []string
	for _, r := range m.Relays {
		if a := r.Addresses["gossip"]; r.ID != self && r.Healthy && a != "" {
			out = append(out, a)
		}
	}
	return out
}

// gossipAddr is where other relays reach this relay's gossip ("" without).
func (m *mesh) gossipAddr() string {
	if m.gossip == nil {
		return ""
	}
	return m.gossip.Addr().String()
}

// updateMeta publishes this relay's load and draining state when they
// changed.
func (m *mesh) updateMeta(ctx context.Context, load uint32, draining bool) {
	if m.gossip == nil {
		return
	}
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	meta := m.meta
	meta.Load = load
	meta.Draining = draining || m.drained
	if meta == m.meta {
		return
	}
	m.meta = meta
	uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := m.gossip.UpdateMeta(uctx, meta); err != nil {
		m.log.Warn("updating gossip metadata failed", "err", err)
	}
}

// announceDraining tells the cluster at once that this relay drains, so
// peers stop choosing it as a replica or forwarding to it (the periodic
// update would take up to two seconds).
func (m *mesh) announceDraining(load int) {
	m.metaMu.Lock()
	m.drained = true
	m.metaMu.Unlock()
	m.updateMeta(context.Background(), uint32(load), true)
}

// relayMap is the live view of the cluster from gossip, as JSON, in the
// control plane's relay map shape (client.FetchMap reads both) plus
// "source", "self" and each relay's gossip "state"; nil without gossip.
// Relays that left or failed stay listed (not healthy) for goneTTL.
func (m *mesh) relayMap() []byte {
	if m.gossip == nil {
		return nil
	}
	type relayView struct {
		client.MapRelay
		State string `json:"state"`
		Self  bool   `json:"self,omitempty"`
	}
	var rs []relayView
	regions := map[string]*client.MapRegion{}
	members := m.gossip.Members()
	m.mu.Lock()
	for id, g := range m.gone {
		switch {
		case time.Since(g.at) > goneTTL:
			delete(m.gone, id)
		case !slices.ContainsFunc(members, func(mb gossip.Member) bool { return mb.Meta.ID == id }):
			members = append(members, g.m)
		}
	}
	m.mu.Unlock()
	for _, mb := range members {
		healthy := mb.State == gossip.StateAlive
		v := relayView{MapRelay: client.MapRelay{ID: mb.Meta.ID, Region: mb.Meta.Region, Addresses: map[string]string{},
			Load: int(mb.Meta.Load), Draining: mb.Meta.Draining, Healthy: healthy}, State: mb.State.String(), Self: mb.Local}
		if mb.Meta.WS != "" {
			v.Addresses["ws"] = mb.Meta.WS
		}
		if mb.Meta.QUIC != "" {
			v.Addresses["quic"] = "quic://" + mb.Meta.QUIC
		}
		if mb.Meta.TURN != "" {
			v.Addresses["turn"] = mb.Meta.TURN
		}
		rs = append(rs, v)
		rg := regions[mb.Meta.Region]
		if rg == nil {
			rg = &client.MapRegion{Name: mb.Meta.Region}
			regions[mb.Meta.Region] = rg
		}
		rg.Relays++
		if healthy && !mb.Meta.Draining {
			rg.Healthy++
		}
	}
	slices.SortFunc(rs, func(a, b relayView) int { return strings.Compare(a.ID, b.ID) })
	regs := make([]client.MapRegion, 0, len(regions))
	for _, rg := range regions {
		regs = append(regs, *rg)
	}
	slices.SortFunc(regs, func(a, b client.MapRegion) int { return strings.Compare(a.Name, b.Name) })
	b, _ := json.Marshal(map[string]any{"source": "gossip", "self": m.self, "generated_at": time.Now().UTC(), "regions": regs, "relays": rs})
	return b
}

// Close leaves the cluster (so peers see a leave, not a failure) and
// stops what start started.
func (m *mesh) Close() {
	if m.stop != nil {
		m.stop() // no join retry or metadata update after the leave
	}
	if m.gossip != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if err := m.gossip.Leave(ctx); err != nil {
			m.log.Warn("leaving the cluster", "err", err)
		}
		cancel()
	}
	m.wg.Wait()
	if m.gossip != nil {
		m.gossip.Close()
	}
	if m.peerUDP != nil {
		m.peerUDP.Close()
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// readSecret reads the peer secret file.
func readSecret(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading --peer-secret-file: %w", err)
	}
	s := []byte(strings.TrimSpace(string(raw)))
	if len(s) < 16 {
		return nil, errors.New("--peer-secret-file must hold at least 16 bytes")
	}
	return s, nil
}
