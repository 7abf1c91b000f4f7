package relay

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/stapes-relay/stapes/relay/peerwire"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Relay-to-relay links. A relay dials a peer's peer listener over QUIC
// (ALPN peerwire.ALPN) and both sides prove they hold the cluster's peer
// secret: each sends HMAC-SHA256(secret, role || TLS exporter), the
// exporter binding the proof to this TLS session, so it cannot be replayed
// elsewhere or relayed by a man in the middle. Certificates are therefore
// not verified by default (relays in development have self-signed ones).
// After that, each request is one bidirectional stream: the request, then
// the reply, each length-prefixed.

// Peer is a relay of the cluster as the membership layer sees it.
type Peer struct {
	ID     string
	Region string
	Addr   string // host:port of its peer listener (UDP)
	URL    string // where clients reach it (quic:// or wss://), for redirects
}

// Cluster is the live membership a relay replicates within.
type Cluster interface {
	// Peers returns the relays currently believed alive (this one may be
	// among them).
	Peers() []Peer
}

// StaticCluster is a fixed membership (tests, single-region setups
// without gossip).
type StaticCluster []Peer

// Peers returns the list.
func (c StaticCluster) Peers() []Peer { return c }

const (
	peerAuthTimeout = 5 * time.Second
	exporterLabel   = "stapes-peer"
)

var (
	// ErrPeerAuth is returned when a peer does not prove the secret.
	ErrPeerAuth = errors.New("relay: peer authentication failed")
	// ErrNoPeer is returned when no link to the peer could be made.
	ErrNoPeer = errors.New("relay: peer unreachable")
)

func peerMAC(secret []byte, role string, qc *quic.Conn) ([]byte, error) {
	cs := qc.ConnectionState().TLS
	ekm, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role))
	m.Write(ekm)
	return m.Sum(nil), nil
}

// peerResetKey derives the peer listener's stateless reset key from the
// cluster secret and the relay's id (the same after a restart).
func peerResetKey(secret []byte, relayID string) quic.StatelessResetKey {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("stapes-peer-stateless-reset\x00" + relayID))
	var k quic.StatelessResetKey
	copy(k[:], m.Sum(nil))
	return k
}

func peerQUICConfig() *quic.Config {
	// Every client forwarded over a link holds one stream for its
	// lifetime; stream windows stay small so a few stalled clients cannot
	// use up the connection's window and hold up the others.
	// A peer silent for 5 s (1 s keepalives) is gone: its links close, and
	// so do the client connections forwarded over them (the clients resume
	// and are forwarded to the session's new home).
	return &quic.Config{MaxIncomingStreams: 1 << 16, MaxIncomingUniStreams: -1, MaxIdleTimeout: 5 * time.Second,
		KeepAlivePeriod: time.Second, HandshakeIdleTimeout: 2 * time.Second,
		InitialStreamReceiveWindow: 256 << 10, MaxStreamReceiveWindow: 2 << 20,
		InitialConnectionReceiveWindow: 4 << 20, MaxConnectionReceiveWindow: 64 << 20}
}

// writeMsg writes one length-prefixed message.
func writeMsg(st *quic.Stream, m *peerwire.Msg) error {
	return wire.WriteFrame(st, peerwire.Append(nil, m))
}

func readMsg(st *quic.Stream) (*peerwire.Msg, error) {
	b, err := wire.ReadFrame(st, peerwire.MaxMessage)
	if err != nil {
		return nil, err
	}
	return peerwire.Decode(b)
}

// links holds one authenticated QUIC connection per peer.
type links struct {
	s  *Server
	tr *quic.Transport

	mu       sync.Mutex
	conns    map[string]*quic.Conn // by peer address
	dials    map[string]*linkDial
	down     map[string]downMark  // peers that failed recently, by address
	answered map[string]time.Time // when each peer last answered a request
}

// linkDial is a dial in progress; err is set before done is closed.
type linkDial struct {
	done chan struct{}
	err  error
}

// linkDialTimeout bounds a link's QUIC handshake and authentication. It
// does not depend on the caller that started the dial: a probe that gives
// up after ProbeTimeout must not cut short a handshake that a busy peer
// (or a loaded machine) needs a little longer for, and that the requests
// queued behind it are waiting for.
const linkDialTimeout = 3 * time.Second

// downMark keeps a peer that did not answer out of replica choices for a
// while (doubling from 0.5 up to 5 s), so a dead replica does not stall every
// commit batch for ReplicaTimeout.
type downMark struct {
	until   time.Time
	backoff time.Duration
}

// isDown reports whether addr failed recently.
func (l *links) isDown(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, ok := l.down[addr]
	return ok && time.Now().Before(d.until)
}

func (l *links) markDown(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.down[addr]
	d.backoff = min(max(2*d.backoff, 500*time.Millisecond), 5*time.Second)
	d.until = time.Now().Add(d.backoff)
	l.down[addr] = d
}

// markUp records that the peer at addr answered a request just now.
func (l *links) markUp(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.down, addr)
	l.answered[addr] = time.Now()
}

// up reports whether the link to addr is established and its peer has
// not failed a request since.
func (l *links) up(addr string) bool {
	l.mu.Lock()
	qc := l.conns[addr]
	l.mu.Unlock()
	return qc != nil && qc.Context().Err() == nil && !l.isDown(addr)
}

// linkDesc is stapes_relay_peer_link_up: one series per peer relay.
var linkDesc = prometheus.NewDesc("stapes_relay_peer_link_up",
	"1 while the QUIC link to a peer relay is established and answering, else 0 (links are kept warm to the relays of this one's region).",
	[]string{"peer", "region"}, nil)

// linkCollector reports the link state of every cluster peer at scrape
// time (relay ids only: no session or user in the labels).
type linkCollector struct{ s *Server }

func (c linkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- linkDesc }

func (c linkCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.links == nil {
		return
	}
	for _, p := range c.s.cfg.Cluster.Peers() {
		if p.ID == c.s.cfg.RelayID || p.Addr == "" {
			continue
		}
		v := 0.0
		if c.s.links.up(p.Addr) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(linkDesc, prometheus.GaugeValue, v, p.ID, p.Region)
	}
}

func newLinks(s *Server) (*links, error) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		return nil, err
	}
	return &links{s: s, tr: &quic.Transport{Conn: udp}, conns: map[string]*quic.Conn{}, dials: map[string]*linkDial{},
		down: map[string]downMark{}, answered: map[string]time.Time{}}, nil
}

// keepWarm keeps an authenticated connection to every live peer of the
// region, so a probe or the first replication of a session costs a stream,
// not a QUIC and TLS handshake (which under load can exceed ProbeTimeout
// and make a live home look dead).
func (l *links) keepWarm(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		for _, p := range l.s.cfg.Cluster.Peers() {
			if p.ID == l.s.cfg.RelayID || p.Region != l.s.cfg.Region || p.Addr == "" || l.isDown(p.Addr) {
				continue
			}
			l.mu.Lock()
			qc := l.conns[p.Addr]
			_, dialing := l.dials[p.Addr]
			l.mu.Unlock()
			if (qc == nil || qc.Context().Err() != nil) && !dialing {
				if _, err := l.conn(ctx, p.Addr); err != nil {
					l.markDown(p.Addr)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (l *links) close() {
	l.mu.Lock()
	for _, qc := range l.conns {
		qc.CloseWithError(0, "relay closed")
	}
	l.conns = map[string]*quic.Conn{}
	l.mu.Unlock()
	_ = l.tr.Close()
}

// conn returns an authenticated connection to addr. One dial at a time
// per address runs in the background within linkDialTimeout; callers wait
// for it, or for their own context.
func (l *links) conn(ctx context.Context, addr string) (*quic.Conn, error) {
	for {
		l.mu.Lock()
		if qc := l.conns[addr]; qc != nil && qc.Context().Err() == nil {
			l.mu.Unlock()
			return qc, nil
		}
		d, dialing := l.dials[addr]
		if !dialing {
			d = &linkDial{done: make(chan struct{})}
			l.dials[addr] = d
		}
		l.mu.Unlock()
		if !dialing && !l.s.spawn(func() { l.dialFor(addr, d) }) {
			l.finishDial(addr, d, nil, ErrClosed)
		}
		select {
		case <-d.done:
			if d.err != nil {
				return nil, d.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dialFor runs the dial d stands for.
func (l *links) dialFor(addr string, d *linkDial) {
	ctx, cancel := context.WithTimeout(l.s.ctx, linkDialTimeout)
	defer cancel()
	qc, err := l.dial(ctx, addr)
	l.finishDial(addr, d, qc, err)
}

func (l *links) finishDial(addr string, d *linkDial, qc *quic.Conn, err error) {
	l.mu.Lock()
	delete(l.dials, addr)
	if err == nil {
		l.conns[addr] = qc
	}
	l.mu.Unlock()
	d.err = err
	close(d.done)
}

func (l *links) dial(ctx context.Context, addr string) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoPeer, addr, err)
	}
	tc := l.s.cfg.PeerTLS
	if tc == nil {
		tc = &tls.Config{InsecureSkipVerify: true} // authenticity comes from the exporter-bound MAC
	}
	tc = tc.Clone()
	tc.NextProtos = []string{peerwire.ALPN}
	qc, err := l.tr.Dial(ctx, ua, tc, peerQUICConfig())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoPeer, addr, err)
	}
	fail := func(err error) (*quic.Conn, error) {
		qc.CloseWithError(1, "auth")
		return nil, err
	}
	mac, err := peerMAC(l.s.cfg.PeerSecret, "client", qc)
	if err != nil {
		return fail(err)
	}
	actx, cancel := context.WithTimeout(ctx, peerAuthTimeout)
	defer cancel()
	rep, err := roundTrip(actx, qc, &peerwire.Msg{Type: peerwire.TypeAuth, Node: l.s.cfg.RelayID, MAC: mac})
	if err != nil {
		return fail(fmt.Errorf("%w: %s: %v", ErrNoPeer, addr, err))
	}
	want, err := peerMAC(l.s.cfg.PeerSecret, "server", qc)
	if err != nil {
		return fail(err)
	}
	if rep.Type != peerwire.TypeAuthOK || !hmac.Equal(rep.MAC, want) {
		return fail(fmt.Errorf("%w: %s did not prove the cluster secret", ErrPeerAuth, addr))
	}
	return qc, nil
}

// roundTrip sends m on a new stream of qc and reads the reply.
func roundTrip(ctx context.Context, qc *quic.Conn, m *peerwire.Msg) (*peerwire.Msg, error) {
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	defer st.CancelRead(0)
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { st.CancelRead(1); st.CancelWrite(1) })
	defer stop()
	if err := writeMsg(st, m); err != nil {
		return nil, err
	}
	_ = st.Close()
	return readMsg(st)
}

// call sends a request to the peer at addr and returns its reply.
func (l *links) call(ctx context.Context, addr string, m *peerwire.Msg) (*peerwire.Msg, error) {
	qc, err := l.conn(ctx, addr)
	if err != nil {
		l.markDown(addr)
		return nil, err
	}
	m.Node = l.s.cfg.RelayID
	start := time.Now()
	rep, err := roundTrip(ctx, qc, m)
	if err != nil {
		l.mu.Lock()
		// A request that failed may be a dead peer whose QUIC connection
		// has not timed out yet: dial afresh next time — unless the peer
		// answered another request since this one started (it is alive,
		// only slow or busy, and closing the link would fail every other
		// request on it).
		dead := !l.answered[addr].After(start)
		if dead && l.conns[addr] == qc {
			delete(l.conns, addr)
			qc.CloseWithError(0, "request failed")
		}
		l.mu.Unlock()
		if dead {
			l.markDown(addr)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrNoPeer, addr, err)
	}
	l.markUp(addr)
	if rep.Type != peerwire.TypeReply {
		return nil, fmt.Errorf("relay: peer %s answered message type %d", addr, rep.Type)
	}
	return rep, nil
}

// ServePeers accepts relay-to-relay links on udp until the server closes.
// The caller owns udp.
func (s *Server) ServePeers(udp net.PacketConn, tlsConf *tls.Config) error {
	if len(s.cfg.PeerSecret) == 0 {
		return fmt.Errorf("%w: peer links need PeerSecret", ErrConfig)
	}
	tc := tlsConf.Clone()
	tc.NextProtos = []string{peerwire.ALPN}
	// A stateless reset key that survives restarts: a relay restarted on
	// the same address answers packets of its former process's links with
	// a reset, so peers drop those links at once instead of sending
	// requests into them until the idle timeout (which stalled takeovers
	// right after a peer restarted).
	key := peerResetKey(s.cfg.PeerSecret, s.cfg.RelayID)
	tr := &quic.Transport{Conn: udp, StatelessResetKey: &key}
	ln, err := tr.Listen(tc, peerQUICConfig())
	if err != nil {
		return fmt.Errorf("relay: peer listener: %w", err)
	}
	stop := context.AfterFunc(s.ctx, func() { ln.Close(); tr.Close() })
	defer stop()
	for {
		qc, err := ln.Accept(s.ctx)
		if err != nil {
			if s.closed.Load() {
				return ErrClosed
			}
			return err
		}
		if !s.spawn(func() { s.servePeer(qc) }) {
			qc.CloseWithError(0, "relay closed")
			return ErrClosed
		}
	}
}

// servePeer authenticates a peer connection, then answers its requests.
func (s *Server) servePeer(qc *quic.Conn) {
	defer qc.CloseWithError(0, "")
	stop := context.AfterFunc(s.ctx, func() { qc.CloseWithError(0, "relay closed") })
	defer stop()
	actx, cancel := context.WithTimeout(s.ctx, peerAuthTimeout)
	st, err := qc.AcceptStream(actx)
	cancel()
	if err != nil {
		return
	}
	_ = st.SetDeadline(time.Now().Add(peerAuthTimeout))
	m, err := readMsg(st)
	want, merr := peerMAC(s.cfg.PeerSecret, "client", qc)
	if err != nil || merr != nil || m.Type != peerwire.TypeAuth || m.Node == "" || !hmac.Equal(m.MAC, want) {
		s.met.drops.WithLabelValues("peer_auth").Inc()
		s.log.Warn("peer link refused: authentication failed", "remote", qc.RemoteAddr().String())
		_ = writeMsg(st, &peerwire.Msg{Type: peerwire.TypeReply, Status: peerwire.StatusDenied})
		return
	}
	node := m.Node
	mac, err := peerMAC(s.cfg.PeerSecret, "server", qc)
	if err != nil {
		return
	}
	if err := writeMsg(st, &peerwire.Msg{Type: peerwire.TypeAuthOK, Node: s.cfg.RelayID, MAC: mac}); err != nil {
		return
	}
	_ = st.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := qc.AcceptStream(s.ctx)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer st.CancelRead(0)
			_ = st.SetDeadline(time.Now().Add(30 * time.Second))
			m, err := readMsg(st)
			if err == nil && m.Type == peerwire.TypeForward {
				s.serveForward(node, st)
				return
			}
			var rep *peerwire.Msg
			if err != nil {
				rep = &peerwire.Msg{Type: peerwire.TypeReply, Status: peerwire.StatusDenied, Reason: "malformed request"}
			} else {
				rep = s.handlePeer(node, m)
			}
			rep.Type = peerwire.TypeReply
			_ = writeMsg(st, rep)
			_ = st.Close()
		}()
	}
}
