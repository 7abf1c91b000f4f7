package turn

import "time"

// Usage is one session's TURN usage on this relay: what relayd records in
// the sync outbox (turn usage, synced to Postgres). Session is the fitting
// session id — PHI-linked: store it, never log it or label a metric with
// it. A record covers one period of activity: from the session's first
// allocation on this relay until its last one closes; a later allocation
// starts a new record with a new FirstSeen, so (Session, FirstSeen) is a
// unique key.
type Usage struct {
	Session string
	// BytesToPeer and PacketsToPeer count payload relayed from the
	// participant's client to peers; the FromPeer pair the other way.
	BytesToPeer, BytesFromPeer     uint64
	PacketsToPeer, PacketsFromPeer uint64
	// Allocations is the number of allocations created in this record;
	// Active how many are live (0 in a record given to OnUsage).
	Allocations, Active int
	FirstSeen, LastSeen time.Time
}

func (u *Usage) add(a *allocation) {
	u.BytesToPeer += a.bytesTo.Load()
	u.BytesFromPeer += a.bytesFrom.Load()
	u.PacketsToPeer += a.pktsTo.Load()
	u.PacketsFromPeer += a.pktsFrom.Load()
	if ls := time.Unix(0, a.lastSeen.Load()); ls.After(u.LastSeen) {
		u.LastSeen = ls
	}
}

// Usage returns the usage of every session with live allocations, up to
// now (for a periodic outbox record or an admin view). Records of ended
// activity go to Config.OnUsage instead.
func (s *Server) Usage() []Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Usage, 0, len(s.sessions))
	for _, ss := range s.sessions {
		u := ss.usage
		for a := range ss.allocs {
			u.add(a)
		}
		u.Active = len(ss.allocs)
		out = append(out, u)
	}
	return out
}

// flushUsage hands queued records to OnUsage, outside the lock.
func (s *Server) flushUsage() {
	s.mu.Lock()
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	if s.cfg.OnUsage == nil {
		return
	}
	for _, u := range p {
		s.cfg.OnUsage(u)
	}
}
