package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"github.com/pion/stun/v4"
	pturn "github.com/pion/turn/v5"
)

// Bounds of the per-client maps kept between inspect and pion's hooks;
// they are cleared when full (the worst case is one more 401 round trip).
const (
	maxKeyIx = 1 << 16
	maxSlots = 1 << 16
)

// inspect looks at a STUN message from a client before pion handles it, in
// the goroutine that hands it to pion (so pion's hooks for this message run
// after it and before the next one). It returns false to drop the message:
// an unauthenticated request over the rate limit. It remembers which secret
// verifies the request's MESSAGE-INTEGRITY (pion's auth hook sees neither
// the message nor the password) and the request's peer addresses with
// their ports (pion's permission hook sees only the IP).
func (s *Server) inspect(b []byte, k clientKey) bool {
	if len(b) < 20 || b[0]&0xC0 != 0 {
		return true // not STUN: pion rejects it
	}
	var mt stun.MessageType
	mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	if mt.Class != stun.ClassRequest {
		return true // indications need an allocation and a permission; pion checks both
	}
	if mt.Method == stun.MethodBinding {
		return s.allowUnauth(k)
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return s.allowUnauth(k) // the 401 challenge, or garbage pion answers with 400
	}
	var user stun.Username
	var realm stun.Realm
	if user.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return s.allowUnauth(k)
	}
	keys, _, err := s.creds.Keys(user.String(), realm.String())
	ix := -1
	if err == nil {
		for i, key := range keys {
			if stun.MessageIntegrity(key).Check(m) == nil {
				ix = i
				break
			}
		}
	}
	if ix < 0 {
		return s.allowUnauth(k) // pion's hook refuses it and counts why
	}
	s.kmu.Lock()
	if len(s.keyIx) >= maxKeyIx {
		clear(s.keyIx)
	}
	s.keyIx[user.String()+"\x00"+realm.String()] = ix
	switch mt.Method {
	case stun.MethodCreatePermission, stun.MethodChannelBind, stun.MethodConnect:
		if len(s.slots) >= maxSlots {
			clear(s.slots)
		}
		s.slots[k] = peerAddrs(m)
	}
	s.kmu.Unlock()
	return true
}

func (s *Server) allowUnauth(k clientKey) bool {
	if s.unauth.allow(k.ap.Addr()) {
		return true
	}
	s.m.refusals.WithLabelValues(refuseUnauthRate).Inc()
	return false
}

// peerAddrs returns every XOR-PEER-ADDRESS of m, unmapped.
func peerAddrs(m *stun.Message) []netip.AddrPort {
	var out []netip.AddrPort
	_ = m.ForEach(stun.AttrXORPeerAddress, func(m *stun.Message) error {
		var x stun.XORMappedAddress
		if x.GetFromAs(m, stun.AttrXORPeerAddress) == nil {
			if a, ok := netip.AddrFromSlice(x.IP); ok {
				out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(x.Port)))
			}
		}
		return nil
	})
	return out
}

// authHandler is pion's AuthHandler: the username's key under the secret
// inspect found (the newest when none did; pion then answers 401). The
// user id pion binds the allocation to is the whole username, so a request
// on an allocation with another credential is refused (RFC 8656 §5).
func (s *Server) authHandler(ra *pturn.RequestAttributes) (string, []byte, bool) {
	if ra.Realm != s.cfg.Realm {
		s.m.authFailures.WithLabelValues(authRealm).Inc()
		return "", nil, false
	}
	keys, _, err := s.creds.Keys(ra.Username, ra.Realm)
	if err != nil {
		s.m.authFailures.WithLabelValues(authReason(err)).Inc()
		return "", nil, false
	}
	s.kmu.Lock()
	ix := s.keyIx[ra.Username+"\x00"+ra.Realm]
	s.kmu.Unlock()
	return ra.Username, keys[min(ix, len(keys)-1)], true
}

// quotaHandler is pion's QuotaHandler: 486 when draining or a quota is
// full. The generator checks again, atomically with the reservation.
func (s *Server) quotaHandler(user, _ string, _ net.Addr) bool {
	_, session, err := parseUsername(user)
	if err != nil {
		return false
	}
	s.mu.Lock()
	r := s.quotaLocked(session, user)
	s.mu.Unlock()
	if r != "" {
		s.m.refusals.WithLabelValues(r).Inc()
		return false
	}
	return true
}

// permit is pion's PermissionHandler, called on CreatePermission,
// ChannelBind and Connect (pion v5.1.3: turn.go handleCreatePermission-
// Request, handleChannelBindRequest, handleConnectRequest all call
// GrantPermission before anything else).
func (s *Server) permit(clientAddr net.Addr, peerIP net.IP) bool {
	ap, ok := netAddrPort(clientAddr)
	if !ok {
		return false
	}
	_, tcp := clientAddr.(*net.TCPAddr)
	k := clientKey{tcp: tcp, ap: ap}
	s.mu.Lock()
	a := s.byClient[k]
	s.mu.Unlock()
	s.kmu.Lock()
	peers := s.slots[k]
	s.kmu.Unlock()
	ip, _ := netip.AddrFromSlice(peerIP)
	r := s.peerVerdict(a, ip, peers)
	if a == nil && r == "" {
		r = ReasonInvalid // pion found an allocation we do not know: refuse
	}
	if r != "" {
		s.m.peerRefusals.WithLabelValues(string(r)).Inc()
		if a != nil {
			s.log.Debug("turn peer refused", "alloc", a.id, "session", a.sess.short, "reason", string(r))
		}
		return false
	}
	return true
}

// peerVerdict decides whether allocation a (nil: unknown) may have a
// permission toward ip, given the full peer addresses of the request. The
// relay's own addresses are refused unless the request names the relayed
// address of another live allocation here (two relay-only participants on
// one relay), which in counterpart-only mode must belong to the same
// session. Everything else is the PeerPolicy's decision.
func (s *Server) peerVerdict(a *allocation, ip netip.Addr, peers []netip.AddrPort) PeerReason {
	if !ip.IsValid() {
		return ReasonInvalid
	}
	ip = ip.Unmap().WithZone("")
	if s.isSelf(ip) {
		r := ReasonRelaySelf
		for _, p := range peers {
			if p.Addr() != ip {
				continue
			}
			if t := s.liveRelay(p); t != nil && t != a {
				if !s.counterpartOnly || (a != nil && t.sess == a.sess) {
					return ""
				}
				r = ReasonNotCounterpart
			}
		}
		return r
	}
	pol := s.policy
	if s.counterpartOnly && a != nil && s.cfg.Counterparts != nil {
		pol = pol.WithCounterparts(s.cfg.Counterparts(a.sess.id)...)
	}
	if err := pol.Check(ip); err != nil {
		var pe *PeerError
		if errors.As(err, &pe) {
			return pe.Reason
		}
		return ReasonInvalid
	}
	return ""
}

// events mirrors pion's allocation state into ours.
func (s *Server) events() pturn.EventHandler {
	return pturn.EventHandler{
		OnAuth: func(_, _ net.Addr, _, _, _, _ string, ok bool) {
			if !ok {
				s.m.authFailures.WithLabelValues(authIntegrity).Inc()
			}
		},
		OnAllocationCreated: func(src, dst net.Addr, _, _, _ string, relay net.Addr, _ int) {
			s.attach(src, dst, relay)
		},
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			if a := s.byRelayAddr(relay); a != nil {
				ip, _ := netip.AddrFromSlice(peer)
				a.mu.Lock()
				if _, ok := a.perms[ip.Unmap()]; !ok {
					a.perms[ip.Unmap()] = struct{}{}
					s.permissions.Add(1)
				}
				a.mu.Unlock()
			}
		},
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, relay net.Addr, peer net.IP) {
			if a := s.byRelayAddr(relay); a != nil {
				ip, _ := netip.AddrFromSlice(peer)
				a.mu.Lock()
				if _, ok := a.perms[ip.Unmap()]; ok {
					delete(a.perms, ip.Unmap())
					s.permissions.Add(-1)
				}
				a.mu.Unlock()
			}
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			a := s.byRelayAddr(relay)
			p, ok := netAddrPort(peer)
			if a == nil || !ok {
				return
			}
			a.mu.Lock()
			if _, dup := a.byNum[num]; !dup {
				s.channels.Add(1)
			}
			a.byNum[num] = p
			a.byPeer[p] = num
			a.mu.Unlock()
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relay, peer net.Addr, num uint16) {
			a := s.byRelayAddr(relay)
			if a == nil {
				return
			}
			a.mu.Lock()
			if p, ok := a.byNum[num]; ok {
				delete(a.byNum, num)
				delete(a.byPeer, p)
				s.channels.Add(-1)
			}
			a.mu.Unlock()
		},
	}
}

func (s *Server) byRelayAddr(relay net.Addr) *allocation {
	ap, ok := netAddrPort(relay)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byRelay[ap]
}

// attach binds a new allocation to its client and, for UDP, to the
// listener socket pion received the Allocate on (named by the LocalAddr
// value only that socket returns), which the fast paths use.
func (s *Server) attach(src, dst, relay net.Addr) {
	ap, ok := netAddrPort(src)
	if !ok {
		return
	}
	_, tcp := src.(*net.TCPAddr)
	k := clientKey{tcp: tcp, ap: ap}
	var sock *udpSock
	if !tcp {
		for _, u := range s.socks {
			if net.Addr(u.laddr) == dst {
				sock = u
			}
		}
	}
	ra, ok := netAddrPort(relay)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.byRelay[ra]
	if a == nil {
		return // already released
	}
	a.client, a.sock = k, sock
	a.attached.Store(true)
	s.byClient[k] = a
	if sock != nil {
		sock.attach(a)
	}
	s.log.Debug("turn allocation", "alloc", a.id, "session", a.sess.short, "tcp", tcp)
}
