package turn

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// clientKey names a client transport address: pion's 5-tuple without the
// server side (one Server address per transport; see README).
type clientKey struct {
	tcp bool
	ap  netip.AddrPort
}

// allocation is stapes' side of one pion allocation: the relayed socket,
// the client it belongs to once pion reports it, channels and permissions
// mirrored from pion's events, counters and bandwidth buckets.
type allocation struct {
	id        uint64 // short id for logs
	sess      *sessionState
	user      string
	relay     *relayConn // UDP relayed socket; nil for a TCP (RFC 6062) allocation
	relayAddr netip.AddrPort
	created   time.Time

	// Set once by attach before attached is stored; read-only after.
	attached atomic.Bool
	client   clientKey
	sock     *udpSock // the UDP listener the client talks to; nil over TCP/TLS

	toPeer, fromPeer *bucket

	bytesTo, bytesFrom, pktsTo, pktsFrom atomic.Uint64
	lastSeen                             atomic.Int64 // unix ns

	mu     sync.RWMutex // guards the fields below
	byNum  map[uint16]netip.AddrPort
	byPeer map[netip.AddrPort]uint16
	perms  map[netip.Addr]struct{}
}

// channelFor returns the channel bound to peer (peer→client fast path).
func (a *allocation) channelFor(peer netip.AddrPort) (uint16, bool) {
	a.mu.RLock()
	n, ok := a.byPeer[peer]
	a.mu.RUnlock()
	return n, ok
}

// peerFor returns the peer bound to channel n (client→peer fast path).
func (a *allocation) peerFor(n uint16) (netip.AddrPort, bool) {
	a.mu.RLock()
	p, ok := a.byNum[n]
	a.mu.RUnlock()
	return p, ok
}

func (a *allocation) permitted(ip netip.Addr) bool {
	a.mu.RLock()
	_, ok := a.perms[ip]
	a.mu.RUnlock()
	return ok
}

// countTo and countFrom add one relayed packet; lock-free, no allocation.
func (a *allocation) countTo(n int, now int64) {
	a.bytesTo.Add(uint64(n))
	a.pktsTo.Add(1)
	a.lastSeen.Store(now)
}

func (a *allocation) countFrom(n int, now int64) {
	a.bytesFrom.Add(uint64(n))
	a.pktsFrom.Add(1)
	a.lastSeen.Store(now)
}

// sessionState is what the Server knows of one fitting session: its live
// allocations and the usage of those already closed.
type sessionState struct {
	id     string // PHI: never logged; short is
	short  string
	allocs map[*allocation]struct{}
	usage  Usage // closed allocations' counters, FirstSeen, Allocations
}

// shortID is a non-reversible short name for a session in logs.
func shortID(session string) string {
	h := sha256.Sum256([]byte("stapes-turn:" + session))
	return hex.EncodeToString(h[:4])
}

// totals are the relayed counters of the whole server.
type totals struct {
	bytesTo, bytesFrom, pktsTo, pktsFrom uint64
}

func (t *totals) add(a *allocation) {
	t.bytesTo += a.bytesTo.Load()
	t.bytesFrom += a.bytesFrom.Load()
	t.pktsTo += a.pktsTo.Load()
	t.pktsFrom += a.pktsFrom.Load()
}

// totals sums closed and live allocations (for the metrics collector).
func (s *Server) totals() totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.closedTotals
	for _, ss := range s.sessions {
		for a := range ss.allocs {
			t.add(a)
		}
	}
	return t
}

func (s *Server) allocCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(s.live)
}

func (s *Server) sessionCount() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.sessions))
}

// quotaLocked returns the refusal reason for one more allocation of
// session and user, or "". s.mu held.
func (s *Server) quotaLocked(session, user string) string {
	switch {
	case s.draining.Load():
		return refuseDraining
	case s.live >= s.cfg.MaxAllocations:
		return refuseQuotaTotal
	case s.sessions[session] != nil && len(s.sessions[session].allocs) >= s.cfg.MaxAllocationsPerSession:
		return refuseQuotaSession
	case s.users[user] >= s.cfg.MaxAllocationsPerUser:
		return refuseQuotaUser
	}
	return ""
}

// reserve admits a new allocation against the quotas and registers it;
// the relayed socket is opened by the caller. It returns a refusal reason
// instead when a quota is full.
func (s *Server) reserve(session, user string) (*allocation, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, refuseDraining
	}
	if r := s.quotaLocked(session, user); r != "" {
		return nil, r
	}
	ss := s.sessions[session]
	now := time.Now()
	if ss == nil {
		ss = &sessionState{id: session, short: shortID(session), allocs: map[*allocation]struct{}{}}
		ss.usage.Session = session
		ss.usage.FirstSeen = now
		s.sessions[session] = ss
	}
	s.nextID++
	a := &allocation{
		id: s.nextID, sess: ss, user: user, created: now,
		byNum: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{}, perms: map[netip.Addr]struct{}{},
	}
	if s.cfg.Bandwidth > 0 {
		a.toPeer = newBucket(float64(s.cfg.Bandwidth), float64(s.cfg.BandwidthBurst))
		a.fromPeer = newBucket(float64(s.cfg.Bandwidth), float64(s.cfg.BandwidthBurst))
	}
	a.lastSeen.Store(now.UnixNano())
	ss.allocs[a] = struct{}{}
	ss.usage.Allocations++
	s.users[user]++
	s.live++
	return a, ""
}

// publish makes a's relayed address known (relay-to-relay checks).
func (s *Server) publish(a *allocation, relayAddr netip.AddrPort) {
	a.relayAddr = relayAddr
	s.mu.Lock()
	s.byRelay[relayAddr] = a
	s.mu.Unlock()
	s.relayPorts[relayAddr.Port()].Store(a)
	s.m.allocsTotal.Inc()
}

// release undoes reserve and publish when a's relayed socket closes; the
// session's usage record is queued for OnUsage after its last allocation.
func (s *Server) release(a *allocation) {
	if a.relayAddr.IsValid() {
		s.relayPorts[a.relayAddr.Port()].CompareAndSwap(a, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byRelay[a.relayAddr] == a {
		delete(s.byRelay, a.relayAddr)
	}
	if a.attached.Load() {
		if s.byClient[a.client] == a {
			delete(s.byClient, a.client)
		}
		if a.sock != nil {
			a.sock.detach(a)
		}
		s.kmu.Lock()
		delete(s.slots, a.client)
		s.kmu.Unlock()
	}
	a.mu.Lock()
	s.permissions.Add(-int64(len(a.perms)))
	s.channels.Add(-int64(len(a.byNum)))
	a.perms, a.byNum, a.byPeer = map[netip.Addr]struct{}{}, map[uint16]netip.AddrPort{}, map[netip.AddrPort]uint16{}
	a.mu.Unlock()
	ss := a.sess
	if _, ok := ss.allocs[a]; !ok {
		return
	}
	delete(ss.allocs, a)
	ss.usage.add(a)
	s.closedTotals.add(a)
	if s.users[a.user]--; s.users[a.user] <= 0 {
		delete(s.users, a.user)
	}
	s.live--
	if len(ss.allocs) == 0 {
		if s.sessions[ss.id] == ss {
			delete(s.sessions, ss.id)
		}
		s.pending = append(s.pending, ss.usage)
	}
}
