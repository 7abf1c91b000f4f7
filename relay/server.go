package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/audit"
	"github.com/stapes-relay/stapes/relay/internal/poll"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Server is one relay's session server. Transports hand it connections
// (Handler for WebSocket, ServeQUIC for QUIC).
type Server struct {
	cfg Config
	log *slog.Logger
	met *metrics

	ctx      context.Context // the server's lifetime
	cancel   context.CancelFunc
	wg       sync.WaitGroup // connections and their goroutines
	commitWG sync.WaitGroup // session committers
	bgWG     sync.WaitGroup // background loops (peer links)

	accepts *acceptLimiter

	pollOnce sync.Once
	poll     *poll.Poller
	pollErr  error

	draining atomic.Bool
	closed   atomic.Bool
	connSeq  atomic.Uint64
	connPfx  string

	ev      *events    // nil: the store records no events
	links   *links     // relay-to-relay links; nil: no replication
	stripes stripes    // see replica.go
	endMu   sync.Mutex // serialises EndSession

	mu        sync.Mutex          // guards the fields below
	ended     map[string]struct{} // sessions ended on this relay (a cache of the store's marks)
	sessions  map[string]*session
	devices   map[string]*device
	conns     map[*conn]struct{}
	closeErr  error
	closeDone chan struct{}
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.ensureDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var pfx [3]byte
	_, _ = rand.Read(pfx[:])
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("relay", cfg.RelayID), ctx: ctx, cancel: cancel,
		connPfx:  hex.EncodeToString(pfx[:]),
		accepts:  newAcceptLimiter(cfg.AcceptRate, cfg.AcceptBurst),
		sessions: map[string]*session{}, devices: map[string]*device{}, conns: map[*conn]struct{}{},
		ended: map[string]struct{}{},
	}
	met, err := newMetrics(cfg.Registerer, s)
	if err != nil {
		cancel()
		return nil, err
	}
	s.met = met
	if cfg.Cluster != nil {
		if s.links, err = newLinks(s); err != nil {
			cancel()
			return nil, fmt.Errorf("relay: peer links: %w", err)
		}
		s.bgWG.Add(1)
		go func() {
			defer s.bgWG.Done()
			s.links.keepWarm(ctx)
		}()
	}
	s.startEvents()
	return s, nil
}

func (s *Server) nextConnID() string {
	return fmt.Sprintf("%s-%d", s.connPfx, s.connSeq.Add(1))
}

// maxPayload is the largest SEND payload: max_frame less room for the
// fields a DELIVER adds (seq, sender, role, flags) and the SEND carries.
func (s *Server) maxPayload() int { return s.cfg.MaxFrame - deliverOverhead }

const deliverOverhead = 512

func (s *Server) tickEvery() time.Duration {
	return max(min(s.cfg.PingInterval, s.cfg.HelloTimeout)/4, 10*time.Millisecond)
}

// Load is the number of open client connections.
func (s *Server) Load() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Ready reports whether the relay admits new sessions.
func (s *Server) Ready() bool { return !s.draining.Load() && !s.closed.Load() }

// track registers a live connection; it fails once the server is closed.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.met.conns.WithLabelValues(c.transport).Inc()
	return true
}

// spawn runs f in a goroutine the server waits for, unless it is closed.
func (s *Server) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// untrack removes a finished connection and detaches it from its session.
func (s *Server) untrack(c *conn) {
	c.cancel()
	if c.sess != nil && c.admitted.Load() {
		c.sess.mu.Lock()
		_, was := c.sess.conns[c]
		delete(c.sess.conns, c)
		c.sess.mu.Unlock()
		s.maybeRetire(c.sess)
		if was {
			s.left(c)
		}
	}
	s.mu.Lock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.met.conns.WithLabelValues(c.transport).Dec()
		s.wg.Done()
	}
	s.mu.Unlock()
}

// attach finds or loads the session named by c's claims and adds c to it.
func (s *Server) attach(ctx context.Context, c *conn, hello *wire.Frame, epoch uint64) (*session, *protoError) {
	id := c.claims.Session
	s.mu.Lock()
	defer s.mu.Unlock()
	if ended, err := s.isEndedLocked(ctx, id); err != nil {
		s.log.Error("loading session", "session", id, "err", err)
		return nil, fatalf(wire.CodeUnavailable, "session state unavailable; retry")
	} else if ended {
		return nil, fatalf(wire.CodeSessionClosed, "the fitting session has ended")
	}
	sess := s.sessions[id]
	if sess == nil {
		meta, ok, err := s.cfg.Store.Meta(ctx, "session/"+id)
		if err != nil {
			s.log.Error("loading session", "session", id, "err", err)
			return nil, fatalf(wire.CodeUnavailable, "session state unavailable; retry")
		}
		if ok && string(meta) != c.claims.Tenant {
			return nil, fatalf(wire.CodeForbidden, "token is for another session")
		}
		head, err := s.cfg.Store.Head(ctx, id)
		if err != nil {
			s.log.Error("loading session head", "session", id, "err", err)
			return nil, fatalf(wire.CodeUnavailable, "session state unavailable; retry")
		}
		chain := audit.Genesis
		if head > 0 {
			err = s.cfg.Store.ReadChain(ctx, id, head-1, head, 1, func(_ uint64, hash, _ []byte) error {
				if hash != nil {
					chain = append([]byte(nil), hash...)
				}
				return nil
			})
			if err != nil {
				s.log.Error("loading session chain", "session", id, "err", err)
				return nil, fatalf(wire.CodeUnavailable, "session state unavailable; retry")
			}
		}
		if epoch == 0 {
			epoch = 1
			if o, ok, err := s.ownerRecord(ctx, id); err == nil && ok && o.home == s.cfg.RelayID {
				epoch = o.epoch
			}
		}
		sess = &session{
			srv: s, id: id, tenant: c.claims.Tenant, epoch: epoch, fresh: !ok, chain: chain, tail: tailRing{max: s.cfg.TailCache, maxBytes: s.cfg.TailBytes},
			conns: map[*conn]struct{}{}, head: head, next: head + 1, inflight: map[string]*op{},
		}
		s.sessions[id] = sess
		s.met.sessions.Inc()
		if !ok {
			s.emit(id, sess.tenant, eventOpened, nil)
		}
	} else if sess.tenant != c.claims.Tenant {
		return nil, fatalf(wire.CodeForbidden, "token is for another session")
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if hello.Epoch > sess.epoch {
		return nil, fatalf(wire.CodeStaleEpoch, "this relay's epoch for the session is older than one you have seen")
	}
	if hello.Resume && hello.LastSeq > sess.head {
		s.retireLocked(sess)
		return nil, fatalf(wire.CodeBadResume, "resume position %d beyond session head %d", hello.LastSeq, sess.head)
	}
	if c.dev != nil {
		switch {
		case sess.dev == nil:
			sess.dev, sess.limits = c.dev, s.limitsFor(c.claims.Model)
		case sess.dev != c.dev:
			return nil, fatalf(wire.CodeForbidden, "token names another device than the session's")
		}
	}
	if len(sess.conns) >= s.cfg.MaxConnsPerSession {
		return nil, fatalf(wire.CodeOverloaded, "session has %d connections, the limit", len(sess.conns))
	}
	sess.conns[c] = struct{}{}
	return sess, nil
}

// maybeRetire drops an idle session from memory: no connections, nothing
// queued or committing.
func (s *Server) maybeRetire(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	defer sess.mu.Unlock()
	s.retireLocked(sess)
}

// retireLocked: caller holds s.mu and sess.mu.
func (s *Server) retireLocked(sess *session) {
	if len(sess.conns) == 0 && !sess.committing && len(sess.queue) == 0 && s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
		s.met.sessions.Dec()
	}
}

// unloadSession drops a failed session so the next connection reloads it.
func (s *Server) unloadSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
		s.met.sessions.Dec()
	}
}

// device returns the loaded config state of a device.
func (s *Server) device(ctx context.Context, tenant, serial string) (*device, error) {
	key := deviceKey(tenant, serial)
	s.mu.Lock()
	d := s.devices[key]
	if d == nil {
		d = &device{key: key}
		s.devices[key] = d
	}
	s.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded {
		return d, nil
	}
	blob, _, err := s.cfg.Store.Meta(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := d.load(blob); err != nil {
		return nil, err
	}
	return d, nil
}

// sessionLoaded reports whether a session is in memory on this relay.
func (s *Server) sessionLoaded(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[id] != nil
}

// refreshDevice asks the control plane for the device's applied config
// when a session starts here, and adopts it if it is ahead. The relay goes
// on with its own state when the control plane does not answer in time.
func (s *Server) refreshDevice(ctx context.Context, d *device, tenant, serial string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	version, params, err := s.cfg.Devices.DeviceConfig(ctx, tenant, serial)
	if err != nil {
		s.log.Warn("device config from the control plane unavailable; using local state", "device", serial, "err", err)
		return
	}
	// The adopted state reaches the store with the next command's commit;
	// a restart before that adopts it again at the next session start.
	d.mu.Lock()
	changed := d.adopt(version, params)
	d.mu.Unlock()
	if changed {
		s.log.Info("device config adopted from the control plane", "device", serial, "version", version)
	}
}

// forgetDevice makes the next use of a device reload it from the store,
// after a failed commit left its in-memory state ahead of what is durable.
func (s *Server) forgetDevice(key string) {
	s.mu.Lock()
	d := s.devices[key]
	s.mu.Unlock()
	if d != nil {
		d.mu.Lock()
		d.loaded = false
		d.mu.Unlock()
	}
}

func (s *Server) limitsFor(model string) *ModelLimits {
	if l, ok := s.cfg.Limits[model]; ok {
		return &l
	}
	return s.cfg.DefaultLimits
}

// Drain stops admission, sends GOAWAY to every connection, and waits until
// they have all gone or ctx ends; then it closes what is left.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	goaway := func(redirect string) []byte {
		return wire.Encode(&wire.Frame{
			Type: wire.TypeGoaway, Code: wire.CodeDraining, Redirect: redirect,
			AfterMillis: uint64(s.cfg.DrainGrace.Milliseconds()),
		})
	}
	g := goaway(s.cfg.DrainRedirect)
	for _, c := range s.connSnapshot() {
		// A session's clients go to its replica, which takes it over
		// (probe answers handoff while draining, replica.go).
		if c.admitted.Load() && c.sess != nil {
			if u := c.sess.handoffURL(); u != "" {
				c.control(goaway(u))
				continue
			}
		}
		c.control(g)
	}
	s.log.Info("draining", "connections", len(s.connSnapshot()))
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	grace := time.NewTimer(s.cfg.DrainGrace)
	defer grace.Stop()
	for len(s.connSnapshot()) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-grace.C:
			for _, c := range s.connSnapshot() {
				c.fail(fatalf(wire.CodeDraining, "relay is draining; reconnect"))
			}
		case <-t.C:
		}
	}
	return nil
}

func (s *Server) connSnapshot() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// Close stops every connection and waits for all goroutines the server
// started, including in-flight commits. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closeDone != nil {
		ch := s.closeDone
		s.mu.Unlock()
		<-ch
		return nil
	}
	s.closeDone = make(chan struct{})
	s.closed.Store(true)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.commitWG.Wait()
	s.bgWG.Wait()
	if s.links != nil {
		s.links.close()
	}
	if s.ev != nil {
		s.ev.close()
	}
	close(s.closeDone)
	return nil
}
