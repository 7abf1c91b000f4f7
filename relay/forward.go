package relay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	neturl "net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/stapes-relay/stapes/relay/peerwire"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Forwarding. A participant whose session lives on another relay (the
// home) may be served by the relay it connected to (the edge) instead of
// being redirected: the edge checks the token, opens a stream on its
// authenticated peer link to the home, sends a peerwire Forward message
// and then the client's HELLO, and from there pipes frames. The home runs
// the connection like any other (transport "relay"): it verifies the token
// again, keeps the durable cursor, commits, replicates and acknowledges,
// so the delivery promise is the home's, unchanged. The edge only moves
// bytes — it holds no session state, so a forwarded connection that breaks
// is resumed with last_seq like a direct one.
//
// On the stream, edge → home is the client's frames, each length-prefixed
// (wire.WriteFrame); home → edge is each frame prefixed by its class byte,
// then length-prefixed, so the edge queues it on the client's matching
// QUIC stream without decoding it. Only GOAWAY and fatal ERROR frames are
// read at the edge: before WELCOME a GOAWAY that names another relay is
// followed through the link (the session moved), after WELCOME a GOAWAY's
// redirect is replaced by the edge's own URL (the client comes back here
// and is forwarded to the session's new home), and a fatal ERROR closes
// the client's connection with its code.

// Forward policies (Config.Forward).
type ForwardMode string

// Forward policies.
const (
	ForwardRegion ForwardMode = "region" // forward when the home is in another region, else redirect
	ForwardAlways ForwardMode = "always"
	ForwardNever  ForwardMode = "never"
)

// transportRelay labels connections a peer forwards to this relay.
const transportRelay = "relay"

// maxForwardHops bounds how often an edge follows a home's GOAWAY to
// another relay before it hands the redirect to the client instead.
const maxForwardHops = 3

// Forward failure reasons (metric label).
const (
	forwardNoLink = "no_link" // the stream to the home could not be opened
	forwardLost   = "lost"    // the link broke while serving
)

// forward is the edge's end of one forwarded connection.
type forward struct {
	c  *conn
	p  Peer
	st *quic.Stream
	mu sync.Mutex // serialises writes to st
}

// forwardPeer returns the peer to forward c to for a redirect to url, if
// the policy and the cluster allow it. Connections forwarded to this
// relay are never forwarded again (they redirect).
func (s *Server) forwardPeer(c *conn, url string) (Peer, bool) {
	if s.links == nil || s.cfg.Forward == ForwardNever || c.transport == transportRelay || url == "" {
		return Peer{}, false
	}
	host := urlHost(url)
	for _, p := range s.cfg.Cluster.Peers() {
		// A relay serves WebSocket and QUIC on one port: a redirect to
		// either names the same relay.
		if (p.URL != url && urlHost(p.URL) != host) || host == "" || p.ID == s.cfg.RelayID || p.Addr == "" {
			continue
		}
		if s.cfg.Forward == ForwardRegion && p.Region == s.cfg.Region {
			return Peer{}, false
		}
		return p, true
	}
	return Peer{}, false
}

// urlHost is the host:port of a client URL ("" if it has none).
func urlHost(u string) string {
	pu, err := neturl.Parse(u)
	if err != nil {
		return ""
	}
	return pu.Host
}

// startForward opens a forward to p and sends it hello. It reports false
// when the link could not be set up (the caller then redirects).
func (c *conn) startForward(ctx context.Context, p Peer, hello []byte, hops int) bool {
	s := c.srv
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReplicaTimeout)
	defer cancel()
	st, err := s.links.open(ctx, p.Addr)
	if err == nil {
		_ = st.SetWriteDeadline(time.Now().Add(s.cfg.ReplicaTimeout))
		err = writeMsg(st, &peerwire.Msg{Type: peerwire.TypeForward, Node: s.cfg.RelayID, Session: c.claims.Session})
		if err == nil {
			err = wire.WriteFrame(st, hello)
		}
		if err != nil {
			st.CancelRead(0)
			st.CancelWrite(0)
		}
	}
	if err != nil {
		s.met.forwardFails.WithLabelValues(forwardNoLink).Inc()
		s.log.Warn("cannot forward to the session's home; redirecting", "conn", c.id, "session", c.claims.Session, "home", p.ID, "err", err)
		return false
	}
	fw := &forward{c: c, p: p, st: st}
	c.fwd.Store(fw)
	stop := context.AfterFunc(c.ctx, func() {
		st.CancelRead(0)
		st.CancelWrite(0)
	})
	if !s.spawn(func() { defer stop(); fw.pipe(hello, hops) }) {
		stop()
		st.CancelRead(0)
		st.CancelWrite(0)
		c.fwd.Store(nil)
		return false
	}
	return true
}

// send writes one client frame to the home.
func (fw *forward) send(b []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_ = fw.st.SetWriteDeadline(time.Now().Add(3 * fw.c.srv.cfg.PingInterval))
	if err := wire.WriteFrame(fw.st, b); err != nil && fw.c.fwd.Load() == fw {
		fw.lost(err) // the connection closes with unavailable once the ERROR is out
	}
	return nil
}

// lost ends the client's connection after the link to the home broke; the
// client reconnects (here, usually) and resumes.
func (fw *forward) lost(err error) {
	c := fw.c
	if c.closing.Load() || c.ctx.Err() != nil {
		return
	}
	c.srv.met.forwardFails.WithLabelValues(forwardLost).Inc()
	c.srv.log.Info("link to the session's home lost", "conn", c.id, "session", c.claims.Session, "home", fw.p.ID, "err", err)
	c.fail(fatalf(wire.CodeUnavailable, "lost the link to the relay serving the session; reconnect and resume"))
}

// pipe copies the home's frames to the client until the stream ends.
func (fw *forward) pipe(hello []byte, hops int) {
	c, s := fw.c, fw.c.srv
	br := bufio.NewReaderSize(fw.st, 4096)
	welcomed := false
	counted := false
	defer func() {
		if counted {
			s.met.forwarded.Dec()
		}
	}()
	for {
		b, err := wire.ReadFrame(br, s.cfg.MaxFrame+1)
		if err == nil && (len(b) < 2 || wire.Class(b[0]) >= wire.NumClasses) {
			err = errors.New("relay: malformed forwarded frame")
		}
		if err != nil {
			fw.lost(err)
			return
		}
		cl, f := wire.Class(b[0]), b[1:]
		switch wire.Type(f[0]) {
		case wire.TypeWelcome:
			if !welcomed {
				welcomed = true
				counted = true
				s.met.forwarded.Inc()
				c.admitted.Store(true) // before the client can read WELCOME and open its streams
				s.log.Info("forwarding", "conn", c.id, "session", c.claims.Session, "home", fw.p.ID, "transport", c.transport)
			}
		case wire.TypeGoaway:
			g, err := wire.Decode(f, s.cfg.MaxFrame)
			if err != nil {
				break
			}
			if !welcomed && g.Redirect != "" && hops < maxForwardHops {
				// The session is not (or no longer) there: follow it.
				if p, ok := s.forwardPeer(c, g.Redirect); ok {
					fw.st.CancelRead(0)
					fw.st.CancelWrite(0)
					if !c.startForward(c.ctx, p, hello, hops+1) {
						e := fatalf(wire.CodeUnavailable, "the session is served by another relay; reconnect there")
						e.redirect = g.Redirect
						c.fail(e)
					}
					return
				}
			}
			if welcomed && g.Redirect != "" && s.cfg.SelfURL != "" && !s.draining.Load() {
				// The session moves (its home drains or was replaced):
				// the client comes back here and is forwarded anew.
				g.Redirect = s.cfg.SelfURL
				f = wire.Encode(&g)
			}
		case wire.TypeError:
			if e, err := wire.Decode(f, s.cfg.MaxFrame); err == nil && e.Fatal {
				c.failWith(e.Code, f)
				continue
			}
		}
		if cl == wire.ClassTelemetry || cl == wire.ClassSignal {
			c.ephemeral(cl, f)
			continue
		}
		if !c.out[cl].pushWait(f, c.ctx.Done()) {
			return
		}
		c.wake(cl)
	}
}

// open opens a stream on the authenticated link to addr.
func (l *links) open(ctx context.Context, addr string) (*quic.Stream, error) {
	qc, err := l.conn(ctx, addr)
	if err != nil {
		l.markDown(addr)
		return nil, err
	}
	return qc.OpenStreamSync(ctx)
}

// serveForward runs, on the home, a client connection a peer forwards:
// like a QUIC connection with one writer per class, all sharing st.
func (s *Server) serveForward(node string, st *quic.Stream) {
	_ = st.SetDeadline(time.Time{})
	if !s.admitConn() {
		st.CancelWrite(quic.StreamErrorCode(wire.CodeOverloaded))
		return
	}
	c := s.newConn(transportRelay, false)
	if !s.track(c) {
		st.CancelWrite(quic.StreamErrorCode(wire.CodeDraining))
		return
	}
	defer s.untrack(c)
	var wmu sync.Mutex
	var wg sync.WaitGroup
	for _, cl := range allClasses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hdr [5]byte
			err := c.writeLoop(c.ctx, []wire.Class{cl}, func(ctx context.Context, b []byte) error {
				binary.BigEndian.PutUint32(hdr[:4], uint32(len(b)+1))
				hdr[4] = byte(cl)
				wmu.Lock()
				defer wmu.Unlock()
				_ = st.SetWriteDeadline(time.Now().Add(3 * s.cfg.PingInterval))
				if _, err := st.Write(hdr[:]); err != nil {
					return err
				}
				_, err := st.Write(b)
				return err
			})
			if cl == wire.ClassControl {
				if errors.Is(err, errConnDone) {
					wmu.Lock()
					_ = st.Close() // the edge reads the ERROR, then the end of the stream
					wmu.Unlock()
				}
				c.cancel()
			}
		}()
	}
	stop := context.AfterFunc(c.ctx, func() { st.CancelRead(0) })
	br := bufio.NewReaderSize(st, 4096)
	for {
		b, err := wire.ReadFrame(br, s.cfg.MaxFrame)
		if err != nil {
			c.badFrame(err)
			break
		}
		if c.handleFrame(c.ctx, b) != nil {
			break
		}
	}
	if !c.closing.Load() {
		c.cancel()
	}
	wg.Wait()
	stop()
	s.log.Debug("forwarded connection ended", "conn", c.id, "peer", node)
}
