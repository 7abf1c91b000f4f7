package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/audit"
	"github.com/stapes-relay/stapes/relay/wire"
)

// entry is a committed log entry with the fields delivery needs decoded.
type entry struct {
	seq      uint64
	typ      wire.Type
	sender   string
	kind     wire.Kind
	clientID string
	frame    []byte
}

func decodeEntry(seq uint64, frame []byte) (entry, error) {
	f, err := wire.Decode(frame, 1<<30)
	if err != nil {
		return entry{}, fmt.Errorf("relay: stored entry %d: %w", seq, err)
	}
	return entry{seq: seq, typ: f.Type, sender: f.Sender, kind: f.Kind, clientID: f.ClientID, frame: frame}, nil
}

// op is an entry assigned a seq and queued for group commit.
type op struct {
	e       entry
	hash    []byte // audit chain hash
	key     string
	reply   []byte  // PERSISTED for the sender, nil for receipts
	waiters []*conn // connections to send reply to once committed
	devKey  string  // device state to commit with it, if any
	devBlob []byte
}

// session is one fitting session on this relay: its participants, its
// sequence, and its group-commit queue.
type session struct {
	srv    *Server
	id     string
	tenant string
	epoch  uint64
	ended  atomic.Bool // EndSession ended it: refuse new connections

	// Used by the committer only (one at a time per session):
	replica     string                 // the peer id replicated to (replica.go)
	replicaURL  atomic.Pointer[string] // its client URL, read by Drain
	devRecorded bool                   // sessionDeviceMeta written
	recorded    owner                  // the owner record last committed here

	mu sync.Mutex // guards the fields below
	// dev is the hearing aid of the session, bound by the first token that
	// names one; tokens naming another are refused. limits are its model's.
	dev        *device
	limits     *ModelLimits
	chain      []byte // audit hash of the last assigned entry
	conns      map[*conn]struct{}
	head       uint64 // highest committed seq
	next       uint64 // next seq to assign
	queue      []*op  // assigned, waiting for commit
	inflight   map[string]*op
	tail       tailRing // recent committed entries
	committing bool
	failed     error
	fresh      bool // no session metadata stored yet
}

// committedHead returns the highest committed seq.
func (s *session) committedHead() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// enqueue queues op for commit and starts the committer if idle. Caller
// holds s.mu and has assigned op.e.seq = s.next.
func (s *session) enqueue(o *op) {
	o.hash = audit.Hash(s.chain, s.id, o.e.seq, o.e.frame)
	s.chain = o.hash
	s.next++
	s.queue = append(s.queue, o)
	if o.key != "" {
		s.inflight[o.key] = o
	}
	if !s.committing {
		s.committing = true
		s.srv.commitWG.Add(1)
		go s.commitLoop()
	}
}

// commitLoop commits queued ops in batches until the queue is empty. There
// is at most one per session, so the store sees one Commit per session at a
// time; concurrent sessions share fsyncs in the store.
//
// With replication a batch goes to the replica first and is committed
// here only after the replica has it (so this relay never holds an entry
// its replica lacks), and the two stages overlap: while batch k is
// committed here, batch k+1 travels to the replica. At most one batch
// waits for its local commit, so a session's throughput is bounded by the
// slower stage, not by their sum.
func (s *session) commitLoop() {
	defer s.srv.commitWG.Done()
	cfg := &s.srv.cfg
	var local chan struct{} // closed when the last batch's local commit ended (nil: none)
	waitLocal := func() {
		if local != nil {
			<-local
			local = nil
		}
	}
	for {
		s.mu.Lock()
		if len(s.queue) == 0 || s.failed != nil {
			if local != nil {
				// The last batch may fail or more may be queued meanwhile:
				// look again once it is committed.
				s.mu.Unlock()
				waitLocal()
				continue
			}
			s.committing = false
			s.mu.Unlock()
			s.srv.maybeRetire(s)
			return
		}
		n := min(len(s.queue), cfg.MaxBatch)
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		meta := map[string][]byte{}
		if s.fresh {
			meta["session/"+s.id] = []byte(s.tenant)
			s.fresh = false
		}
		s.mu.Unlock()

		entries := make([]wire.LogEntry, len(batch))
		for i, o := range batch {
			entries[i] = wire.LogEntry{Seq: o.e.seq, Key: o.key, Frame: o.e.frame, Hash: o.hash}
			if o.devKey != "" {
				meta[o.devKey] = o.devBlob
				if !s.devRecorded {
					// Which device state goes with the session, for
					// replicas brought up to date later (replica.go).
					meta[sessionDeviceMeta(s.id)] = []byte(o.devKey)
					s.devRecorded = true
				}
			}
		}
		if cfg.Delay > 0 {
			t := time.NewTimer(cfg.Delay)
			select {
			case <-t.C:
			case <-s.srv.ctx.Done():
				t.Stop()
			}
		}
		start := time.Now()
		if !s.srv.replicating() {
			s.commitLocal(batch, entries, meta, false, false, start)
			continue
		}
		degraded, err := s.replicate(entries, meta)
		if err == nil {
			if rec := (owner{epoch: s.epoch, home: s.srv.cfg.RelayID, url: cfg.SelfURL, replica: s.replica}); rec != s.recorded {
				s.recorded = rec
				meta[ownerMeta(s.id)] = rec.encode()
			}
		}
		waitLocal() // the previous batch first: commits of a session are sequential
		s.mu.Lock()
		failed := s.failed
		s.mu.Unlock()
		switch {
		case failed != nil:
			// The previous batch's local commit failed: this one, on the
			// replica already, is fetched back when the session reloads
			// (replica.go) and its senders' retries get their seqs.
			s.forgetDevices(batch)
			continue
		case err != nil:
			s.forgetDevices(batch)
			var st *staleError
			if errors.As(err, &st) {
				s.fenced(st)
			} else {
				s.fail(err)
			}
			continue
		}
		// The replica has synced the batch: unless configured otherwise,
		// the home's copy need not wait for its own fsync. An owner record
		// change is synced here, so that a home that restarts knows its
		// replica and fetches from it what its crash lost.
		_, owns := meta[ownerMeta(s.id)]
		_, can := cfg.Store.(unsyncedStore)
		if can && !degraded && !cfg.SyncHome && !owns {
			// Applied without an fsync, the local commit is short:
			// overlapping it with the next replication would cost a
			// goroutine handoff per batch and gain nothing.
			s.commitLocal(batch, entries, meta, degraded, true, start)
			continue
		}
		done := make(chan struct{})
		local = done
		go func() {
			defer close(done)
			s.commitLocal(batch, entries, meta, degraded, false, start)
		}()
	}
}

// commitLoop's second stage: commit a batch here, then acknowledge it.
// unsynced: the replica has synced the batch, so this relay's copy is
// committed without waiting for its own fsync (the Store is an
// unsyncedStore).
func (s *session) commitLocal(batch []*op, entries []wire.LogEntry, meta map[string][]byte, degraded, unsynced bool, start time.Time) {
	cfg := &s.srv.cfg
	commit := cfg.Store.Commit
	if unsynced {
		commit = cfg.Store.(unsyncedStore).CommitUnsynced
	}
	err := commit(s.srv.ctx, s.id, entries, meta)
	s.srv.met.commitSeconds.Observe(time.Since(start).Seconds())
	s.srv.met.commitBatch.Observe(float64(len(batch)))
	if err != nil {
		s.forgetDevices(batch)
		s.fail(err)
		return
	}
	s.mu.Lock()
	s.head = batch[len(batch)-1].e.seq
	for _, o := range batch {
		if o.key != "" && s.inflight[o.key] == o {
			delete(s.inflight, o.key)
		}
		s.tail.push(o.e)
	}
	conns := s.connList()
	s.mu.Unlock()
	for _, o := range batch {
		reply := o.reply
		if degraded && reply != nil {
			reply = degradedReply(reply)
		}
		for _, c := range o.waiters {
			c.reply(reply)
		}
	}
	for _, c := range conns {
		c.kickDurable()
	}
}

// fail handles a commit error: nothing queued can be acknowledged, so the
// session closes every connection (clients resume and retry idempotently)
// and is dropped from memory, to be reloaded from the store.
func (s *session) fail(err error) {
	s.srv.log.Error("session commit failed; closing its connections", "session", s.id, "err", err)
	s.srv.met.commitErrors.Inc()
	s.failWith(fatalf(wire.CodeUnavailable, "session storage failed; reconnect and resume"), err)
}

// forgetDevices drops the cached device state the ops of a batch that
// was not committed advanced (it is reloaded from the store).
func (s *session) forgetDevices(batch []*op) {
	for _, o := range batch {
		if o.devKey != "" {
			s.srv.forgetDevice(o.devKey)
		}
	}
}

// degradedReply returns a PERSISTED frame with the degraded flag set.
func degradedReply(reply []byte) []byte {
	f, err := wire.Decode(reply, len(reply)+1)
	if err != nil {
		return reply
	}
	f.Flags |= wire.FlagDegraded
	return wire.Encode(&f)
}

// failWith drops the session from memory, refusing everything queued, and
// ends its connections with e.
func (s *session) failWith(e *protoError, err error) {
	s.mu.Lock()
	s.failed = err
	for _, o := range s.queue {
		if o.devKey != "" {
			s.srv.forgetDevice(o.devKey)
		}
	}
	s.queue = nil
	conns := s.connList()
	s.mu.Unlock()
	s.srv.unloadSession(s)
	for _, c := range conns {
		c.fail(e)
	}
}

// connList returns the attached connections. Caller holds s.mu.
func (s *session) connList() []*conn {
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	return cs
}

// read returns up to limit committed entries with after < seq <= upto,
// from the tail cache when it covers them, else from the store.
func (s *session) read(ctx context.Context, after, upto uint64, limit int) ([]entry, error) {
	s.mu.Lock()
	if _, ok := s.tail.get(after + 1); ok {
		var out []entry
		for seq := after + 1; seq <= upto && len(out) < limit; seq++ {
			e, ok := s.tail.get(seq)
			if !ok {
				break
			}
			out = append(out, e)
		}
		s.mu.Unlock()
		return out, nil
	}
	s.mu.Unlock()
	var out []entry
	err := s.srv.cfg.Store.ReadLog(ctx, s.id, after, upto, limit, func(seq uint64, frame []byte) error {
		e, err := decodeEntry(seq, append([]byte(nil), frame...))
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// entryAt returns one committed entry.
func (s *session) entryAt(ctx context.Context, seq uint64) (entry, bool, error) {
	if seq == 0 || seq > s.committedHead() {
		return entry{}, false, nil
	}
	es, err := s.read(ctx, seq-1, seq, 1)
	if err != nil || len(es) == 0 {
		return entry{}, false, err
	}
	return es[0], true, nil
}
