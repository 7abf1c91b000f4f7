package relay

import (
	"context"
	"encoding/json"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/storage"
)

// Session lifecycle: the relay records, for the control plane, when a
// session opened on it, when participants joined and left, and when it
// ended. The records are storage events (synced through the outbox with
// the log, see storage/event.go); their kinds are syncproto's.
const (
	eventOpened = 1
	eventJoined = 2
	eventLeft   = 3
	eventEnded  = 4
)

// EventStore is what a Store also implements when it can record events
// (storage.Store does). Without it the relay records none.
type EventStore interface {
	AppendEvent(ctx context.Context, ev storage.Event) (uint64, error)
}

// endedMeta names the metadata blob that marks a session ended on this
// relay (value: its tenant), so a restarted relay still refuses it.
func endedMeta(id string) string { return "ended/" + id }

// endedStoreSession is the store "session" under which ended marks are
// committed (meta-only commits, serialised by Server.endMu).
const endedStoreSession = "_relay"

// events queues events and writes them in order on one goroutine, so
// admission never waits for a synced write. A full queue drops the event
// (counted): lifecycle records are for the record, not for delivery.
type events struct {
	st   EventStore
	ch   chan storage.Event
	stop chan struct{}
	done chan struct{}
}

func (s *Server) startEvents() {
	st, ok := s.cfg.Store.(EventStore)
	if !ok {
		return
	}
	s.ev = &events{st: st, ch: make(chan storage.Event, s.cfg.EventQueue), stop: make(chan struct{}), done: make(chan struct{})}
	go s.ev.run(s)
}

func (e *events) run(s *Server) {
	defer close(e.done)
	write := func(ev storage.Event) {
		for attempt := range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := e.st.AppendEvent(ctx, ev)
			cancel()
			if err == nil {
				return
			}
			if attempt == 2 {
				s.met.drops.WithLabelValues("event_write_failed").Inc()
				s.log.Warn("session event not recorded", "session", ev.Session, "kind", ev.Kind, "err", err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for {
		select {
		case ev := <-e.ch:
			write(ev)
		case <-e.stop:
			for {
				select {
				case ev := <-e.ch:
					write(ev)
				default:
					return
				}
			}
		}
	}
}

func (e *events) close() {
	close(e.stop)
	<-e.done
}

// emit queues a lifecycle event of a session; data is marshalled to JSON
// and must hold short ids only.
func (s *Server) emit(session, tenant string, kind uint8, data map[string]any) {
	if s.ev == nil {
		return
	}
	if data == nil {
		data = map[string]any{}
	}
	data["relay"] = s.cfg.RelayID
	blob, _ := json.Marshal(data)
	select {
	case s.ev.ch <- storage.Event{Session: session, Tenant: tenant, Kind: kind, At: time.Now(), Data: blob}:
	default:
		s.met.drops.WithLabelValues("event_queue_full").Inc()
	}
}

// joined records an admitted connection.
func (s *Server) joined(c *conn, resume bool) {
	s.emit(c.claims.Session, c.claims.Tenant, eventJoined, map[string]any{
		"subject": c.claims.Subject, "role": c.claims.Role, "transport": c.transport, "conn": c.id, "resume": resume})
}

// left records the end of an admitted connection.
func (s *Server) left(c *conn) {
	s.emit(c.claims.Session, c.claims.Tenant, eventLeft, map[string]any{
		"subject": c.claims.Subject, "role": c.claims.Role, "transport": c.transport, "conn": c.id,
		"connected_ms": time.Since(c.started).Milliseconds()})
}

// EndSession ends a fitting session on this relay: its connections are
// closed with session_closed, new connections to it are refused (also
// after a restart), and an "ended" event is recorded once. reason is a
// short machine word (e.g. "control_plane"). Ending a session this relay
// never saw still refuses it from now on. It is safe to call repeatedly.
func (s *Server) EndSession(ctx context.Context, tenant, id, reason string) error {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	s.mu.Lock()
	_, already := s.ended[id]
	if sess := s.sessions[id]; tenant == "" && sess != nil {
		tenant = sess.tenant
	}
	s.mu.Unlock()
	if !already {
		_, ok, err := s.cfg.Store.Meta(ctx, endedMeta(id))
		switch {
		case err != nil:
			return err
		case !ok:
			if err := s.cfg.Store.Commit(ctx, endedStoreSession, nil, map[string][]byte{endedMeta(id): []byte(tenant)}); err != nil {
				return err
			}
			s.emit(id, tenant, eventEnded, map[string]any{"reason": reason})
		}
	}
	// Marked under s.mu, where attach looks: a connection attaching from
	// now on is refused, one attached before is in sess.conns below.
	s.mu.Lock()
	s.markEndedLocked(id)
	sess := s.sessions[id]
	if sess != nil {
		sess.ended.Store(true)
	}
	s.mu.Unlock()
	if sess != nil {
		sess.mu.Lock()
		conns := sess.connList()
		sess.mu.Unlock()
		for _, c := range conns {
			c.fail(fatalf(wire.CodeSessionClosed, "the fitting session has ended"))
		}
	}
	if s.cfg.OnSessionEnded != nil {
		s.cfg.OnSessionEnded(id)
	}
	return nil
}

// isEndedLocked reports whether a session was ended on this relay; caller
// holds s.mu. The store is read only for a session not loaded (a loaded
// session cannot be ended without EndSession marking it in memory).
func (s *Server) isEndedLocked(ctx context.Context, id string) (bool, error) {
	if _, ok := s.ended[id]; ok {
		return true, nil
	}
	if sess := s.sessions[id]; sess != nil {
		return sess.ended.Load(), nil
	}
	_, ok, err := s.cfg.Store.Meta(ctx, endedMeta(id))
	if ok {
		s.markEndedLocked(id)
	}
	return ok, err
}

// maxEndedCache bounds the in-memory cache of ended sessions; the store
// keeps every mark.
const maxEndedCache = 100_000

func (s *Server) markEndedLocked(id string) {
	if len(s.ended) >= maxEndedCache {
		clear(s.ended)
	}
	s.ended[id] = struct{}{}
}

// SessionIDs returns the sessions loaded on this relay (for the control
// plane's heartbeat, which answers which of them have ended).
func (s *Server) SessionIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		ids = append(ids, id)
	}
	return ids
}
