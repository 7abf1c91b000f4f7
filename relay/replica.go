package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/peerwire"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Replication and fenced takeover.
//
// A session's home relay replicates every commit batch to the session's
// replica — a live relay of the same region chosen by rendezvous hashing
// over the session id — and commits locally only after the replica
// acknowledged; PERSISTED and delivery follow the local commit. So every
// acknowledged entry is on two relays, and the home never holds an entry
// the replica lacks (the replica may hold one more batch than the home,
// when the home died between the two commits: the home fetches it back
// when it loads the session again).
//
// Ownership is an owner record per session (meta "owner/<id>": epoch,
// home, the home's client URL, the replica): written by the home with its
// commits and by the replica with every replicated batch. A client that
// reaches the replica while the home is alive is redirected to the home.
// When the home does not answer a probe (or the cluster no longer lists
// it), the replica takes the session over: epoch + 1, owner itself,
// persisted before the first client is admitted. The epoch fences the old
// home: the replica — now home — refuses its replication with stale, so
// the old home can never get another entry PERSISTED or delivered; it
// closes its connections with stale_epoch and gives the session up.

type owner struct {
	epoch   uint64
	home    string
	url     string // the home's client URL
	replica string // the home's replica (as the home last chose it)
}

func ownerMeta(id string) string { return "owner/" + id }

// newer orders ownership claims: by epoch, then by home id. Two relays
// that take a session over at once (each from its own stale view) may pick
// the same epoch; the id breaks the tie, so every relay agrees which claim
// wins and the loser is fenced.
func newer(e1 uint64, h1 string, e2 uint64, h2 string) bool {
	return e1 > e2 || (e1 == e2 && h1 > h2)
}

// sessionDeviceMeta names the blob holding the key of the session's device
// state, so a catch-up or sync can send that state along with the log.
func sessionDeviceMeta(id string) string { return "sessdev/" + id }

// deviceMeta returns the session's device state as peer meta (none if
// the session has no device).
func (s *Server) deviceMeta(ctx context.Context, id string) ([]peerwire.Meta, error) {
	key, ok, err := s.cfg.Store.Meta(ctx, sessionDeviceMeta(id))
	if err != nil || !ok {
		return nil, err
	}
	blob, ok, err := s.cfg.Store.Meta(ctx, string(key))
	if err != nil || !ok {
		return nil, err
	}
	return []peerwire.Meta{{Name: sessionDeviceMeta(id), Blob: key}, {Name: string(key), Blob: blob}}, nil
}

// commitMeta applies peer meta to a map (only device state and its key).
func metaFromPeer(ms []peerwire.Meta) map[string][]byte {
	out := map[string][]byte{}
	for _, md := range ms {
		if strings.HasPrefix(md.Name, "device/") || strings.HasPrefix(md.Name, "sessdev/") {
			out[md.Name] = md.Blob
		}
	}
	return out
}

func (o owner) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, o.epoch)
	return append(b, strings.Join([]string{o.home, o.url, o.replica}, "\n")...)
}

func decodeOwner(b []byte) (owner, bool) {
	if len(b) < 8 {
		return owner{}, false
	}
	parts := strings.SplitN(string(b[8:]), "\n", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	o := owner{epoch: binary.BigEndian.Uint64(b), home: parts[0], url: parts[1], replica: parts[2]}
	return o, o.epoch > 0 && o.home != ""
}

func (s *Server) ownerRecord(ctx context.Context, id string) (owner, bool, error) {
	b, ok, err := s.cfg.Store.Meta(ctx, ownerMeta(id))
	if err != nil || !ok {
		return owner{}, false, err
	}
	o, ok := decodeOwner(b)
	return o, ok, nil
}

// stripes serialise store writes for a session between the peer handlers
// and takeover (a loaded session's committer is the only other writer,
// and the handlers refuse to write for a session loaded as home).
type stripes [64]sync.Mutex

func (st *stripes) of(id string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(id))
	return &st[h.Sum32()%64]
}

var (
	errStale     = errors.New("relay: another relay owns the session with a newer epoch")
	errNoReplica = errors.New("relay: no replica reachable")
)

// staleError carries the new owner.
type staleError struct{ o owner }

func (e *staleError) Error() string { return fmt.Sprintf("%v (epoch %d)", errStale, e.o.epoch) }
func (e *staleError) Unwrap() error { return errStale }

// replicating reports whether this relay replicates its sessions.
func (s *Server) replicating() bool { return s.links != nil }

// peerByID finds a live peer.
func (s *Server) peerByID(id string) (Peer, bool) {
	if s.cfg.Cluster == nil {
		return Peer{}, false
	}
	for _, p := range s.cfg.Cluster.Peers() {
		if p.ID == id {
			return p, true
		}
	}
	return Peer{}, false
}

// replicaCandidates ranks the live peers of this relay's region by
// rendezvous hash of the session id (the first is the replica).
func (s *Server) replicaCandidates(session string, exclude map[string]bool) []Peer {
	var out, down []Peer
	for _, p := range s.cfg.Cluster.Peers() {
		if p.ID != s.cfg.RelayID && p.Region == s.cfg.Region && p.Addr != "" && !exclude[p.ID] {
			if s.links.isDown(p.Addr) {
				down = append(down, p)
			} else {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 && s.cfg.RequireReplica {
		// Nothing can commit without a replica: try the ones that failed
		// recently rather than refuse for their whole back-off.
		out = down
	}
	score := func(p Peer) uint64 {
		h := fnv.New64a()
		h.Write([]byte(session))
		h.Write([]byte{0})
		h.Write([]byte(p.ID))
		return h.Sum64()
	}
	slices.SortFunc(out, func(a, b Peer) int {
		sa, sb := score(a), score(b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// keyOf rebuilds an entry's idempotency key from its frame (for catch-up,
// which reads entries without their keys).
func keyOf(frame []byte) string {
	f, err := wire.Decode(frame, len(frame)+1)
	if err != nil {
		return ""
	}
	switch {
	case f.Type == wire.TypeDeliver && f.ClientID != "" && f.Flags&wire.FlagDurable != 0:
		return idemKey("m/" + f.Sender + "/" + f.ClientID)
	case f.Type == wire.TypeReceipt && f.Stage.Final():
		return "f/" + strconv.FormatUint(f.RefSeq, 10)
	case f.Type == wire.TypeReceipt:
		return idemKey("a/" + strconv.FormatUint(f.RefSeq, 10) + "/" + f.Sender)
	}
	return ""
}

func toPeerEntries(es []wire.LogEntry) []peerwire.Entry {
	out := make([]peerwire.Entry, len(es))
	for i, e := range es {
		out[i] = peerwire.Entry{Seq: e.Seq, Key: e.Key, Hash: e.Hash, Frame: e.Frame}
	}
	return out
}

func fromPeerEntries(es []peerwire.Entry) []wire.LogEntry {
	out := make([]wire.LogEntry, len(es))
	for i, e := range es {
		out[i] = wire.LogEntry{Seq: e.Seq, Key: e.Key, Hash: e.Hash, Frame: e.Frame}
	}
	return out
}

// readEntries reads committed entries (after, upto] with hashes and keys.
func (s *Server) readEntries(ctx context.Context, session string, after, upto uint64, limit int) ([]wire.LogEntry, error) {
	var out []wire.LogEntry
	err := s.cfg.Store.ReadChain(ctx, session, after, upto, limit, func(seq uint64, hash, frame []byte) error {
		f := append([]byte(nil), frame...)
		out = append(out, wire.LogEntry{Seq: seq, Key: keyOf(f), Hash: append([]byte(nil), hash...), Frame: f})
		return nil
	})
	return out, err
}

// replicate ships a commit batch to the session's replica and returns
// once it is on the replica's stable storage. degraded: no replica was
// reachable and the configuration allows committing alone. A
// *staleError means another relay owns the session now.
func (s *session) replicate(entries []wire.LogEntry, meta map[string][]byte) (degraded bool, err error) {
	srv := s.srv
	tried := map[string]bool{}
	for range 3 {
		p, ok := s.replicaPeer(tried)
		if !ok {
			break
		}
		err := s.replicateTo(p, entries, meta)
		var st *staleError
		switch {
		case err == nil:
			return false, nil
		case errors.As(err, &st):
			return false, err
		}
		srv.log.Warn("replication to a peer failed; trying the next", "session", s.id, "peer", p.ID, "err", err)
		tried[p.ID] = true
		s.replica = ""
	}
	if srv.cfg.RequireReplica {
		return false, errNoReplica
	}
	srv.met.degraded.Inc()
	return true, nil
}

// replicaPeer returns the session's replica, choosing one when there is
// none (or it is no longer live).
func (s *session) replicaPeer(exclude map[string]bool) (Peer, bool) {
	if s.replica != "" && !exclude[s.replica] {
		if p, ok := s.srv.peerByID(s.replica); ok && (!s.srv.links.isDown(p.Addr) || s.srv.cfg.RequireReplica) {
			return p, true
		}
	}
	cands := s.srv.replicaCandidates(s.id, exclude)
	if len(cands) == 0 {
		return Peer{}, false
	}
	s.replica = cands[0].ID
	s.replicaURL.Store(&cands[0].URL)
	return cands[0], true
}

func (s *session) replicateTo(p Peer, entries []wire.LogEntry, meta map[string][]byte) error {
	srv := s.srv
	var pm []peerwire.Meta
	for name, blob := range meta {
		if strings.HasPrefix(name, "owner/") || strings.HasPrefix(name, "session/") {
			continue // the replica writes its own
		}
		pm = append(pm, peerwire.Meta{Name: name, Blob: blob})
	}
	m := srv.replicateMsg(s.id, s.tenant, s.epoch, entries[0].Seq-1, entries, pm)
	for round := 0; round < 64; round++ {
		rep, err := srv.callPeer(srv.ctx, p, m, srv.cfg.ReplicaTimeout)
		if err != nil {
			return err
		}
		switch rep.Status {
		case peerwire.StatusOK:
			return nil
		case peerwire.StatusGap:
			// The replica lacks earlier entries (a new replica): send
			// them first, then the batch again.
			if err := srv.pushEntries(srv.ctx, p, s.id, s.tenant, s.epoch, rep.Head, m.Prev); err != nil {
				return err
			}
			srv.met.catchUps.Inc()
		default:
			return replyError(p, rep)
		}
	}
	return fmt.Errorf("relay: replica %s: catch-up does not converge", p.ID)
}

// replicateMsg is a Replicate request from this relay as the session's
// home: entries following prev, and meta to commit with them.
func (s *Server) replicateMsg(id, tenant string, epoch, prev uint64, entries []wire.LogEntry, meta []peerwire.Meta) *peerwire.Msg {
	return &peerwire.Msg{Type: peerwire.TypeReplicate, Session: id, Tenant: tenant, Epoch: epoch,
		Home: s.cfg.RelayID, URL: s.cfg.SelfURL, Prev: prev, Entries: toPeerEntries(entries), Meta: meta}
}

// callPeer sends one request to p, bounded by timeout.
func (s *Server) callPeer(ctx context.Context, p Peer, m *peerwire.Msg, timeout time.Duration) (*peerwire.Msg, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.links.call(cctx, p.Addr, m)
}

// probePeer asks p what it knows of a session, within ProbeTimeout — or,
// for a relay of another region (farther, its link not kept warm, and its
// silence never a reason to take a session over), within ReplicaTimeout.
func (s *Server) probePeer(ctx context.Context, p Peer, id string) (*peerwire.Msg, error) {
	timeout := s.cfg.ProbeTimeout
	if p.Region != s.cfg.Region {
		timeout = s.cfg.ReplicaTimeout
	}
	return s.callPeer(ctx, p, &peerwire.Msg{Type: peerwire.TypeProbe, Session: id}, timeout)
}

// writeOwner records a session's owner outside the session's own
// commits. Caller holds the session's stripe.
func (s *Server) writeOwner(ctx context.Context, id string, o owner) error {
	return s.cfg.Store.Commit(ctx, s.ownerStoreSession(id), nil, map[string][]byte{ownerMeta(id): o.encode()})
}

// pushEntries sends p the committed entries (from, upto] of a session, in
// chunks, each with the session's device state; a replica that says it
// lacks earlier entries (gap) gets them from where it stands.
func (s *Server) pushEntries(ctx context.Context, p Peer, id, tenant string, epoch, from, upto uint64) error {
	dm, err := s.deviceMeta(ctx, id)
	if err != nil {
		return err
	}
	for from < upto {
		es, err := s.readEntries(ctx, id, from, upto, 512)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return fmt.Errorf("relay: sending %s to %s: entries after %d unreadable", id, p.ID, from)
		}
		rep, err := s.callPeer(ctx, p, s.replicateMsg(id, tenant, epoch, from, es, dm), s.cfg.ReplicaTimeout)
		if err != nil {
			return err
		}
		switch rep.Status {
		case peerwire.StatusOK:
			from = es[len(es)-1].Seq
		case peerwire.StatusGap:
			from = rep.Head
		default:
			return replyError(p, rep)
		}
	}
	return nil
}

// handoffURL is where a draining home sends the session's clients: its
// replica (which holds the log and takes the session over), or the
// rendezvous choice when nothing was replicated yet. "" without peers.
func (s *session) handoffURL() string {
	if u := s.replicaURL.Load(); u != nil && *u != "" {
		return *u
	}
	if !s.srv.replicating() {
		return ""
	}
	if cands := s.srv.replicaCandidates(s.id, nil); len(cands) > 0 {
		return cands[0].URL
	}
	return ""
}

// drainTarget is where a draining relay sends a connection for a session:
// the session's handoff URL when it is loaded here, else DrainRedirect.
func (s *Server) drainTarget(id string) string {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil {
		if u := sess.handoffURL(); u != "" {
			return u
		}
	}
	if s.replicating() {
		if cands := s.replicaCandidates(id, nil); len(cands) > 0 {
			return cands[0].URL
		}
	}
	return s.cfg.DrainRedirect
}

// fenced handles a stale answer: another relay owns the session with a
// newer epoch. Nothing queued may be acknowledged; the connections learn
// with stale_epoch (fatal) and reconnect, and the session is dropped from
// memory with the new owner recorded, so this relay redirects from now on.
func (s *session) fenced(st *staleError) {
	srv := s.srv
	srv.log.Warn("session fenced: another relay took it over", "session", s.id, "epoch", s.epoch, "new_epoch", st.o.epoch, "owner", st.o.home)
	srv.met.fenced.Inc()
	lk := srv.stripes.of(s.id)
	lk.Lock()
	if err := srv.writeOwner(srv.ctx, s.id, st.o); err != nil {
		srv.log.Warn("recording the new owner failed", "session", s.id, "err", err)
	}
	lk.Unlock()
	s.failWith(fatalf(wire.CodeStaleEpoch, "this relay no longer owns the session; reconnect"), errStale)
}

// ownerStoreSession names the store "session" under which owner records
// are committed outside the session's own commits (store commits of one
// session must not overlap, and the session's committer may be running):
// one per stripe, whose lock the caller holds.
func (s *Server) ownerStoreSession(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return "_owner/" + strconv.Itoa(int(h.Sum32()%64))
}

// resolve decides, before a connection attaches to a session that is not
// loaded, who owns it. It returns the epoch to load the session with, or
// a redirect (the home is alive elsewhere). It may take the session over.
// seen is the highest epoch the connecting client has seen (HELLO's
// epoch): above this relay's record, another relay took the session over
// after the record was written.
func (s *Server) resolve(ctx context.Context, id, tenant, placed string, seen, lastSeq uint64) (epoch uint64, redirect string, err error) {
	if s.sessionLoaded(id) {
		return 0, "", nil
	}
	lk := s.stripes.of(id)
	lk.Lock()
	defer lk.Unlock()
	if s.sessionLoaded(id) {
		// Another connection resolved it while this one waited for the
		// stripe (both participants often arrive together): it is
		// served here now, and its commits are moving the head.
		return 0, "", nil
	}
	o, ok, err := s.ownerRecord(ctx, id)
	if err != nil {
		return 0, "", err
	}
	if !ok {
		elsewhere := placed != "" && placed != s.cfg.RelayID
		if !s.replicating() {
			return 1, "", nil
		}
		if seen == 0 && lastSeq == 0 && !elsewhere {
			return s.claim(ctx, id, tenant)
		}
		// The client has seen this session elsewhere, or the control plane
		// placed it on another relay, and this relay knows nothing of it:
		// send the client to the relay that has it.
		if elsewhere {
			if url := s.askPlaced(ctx, id, placed); url != "" {
				return 0, url, nil
			}
		}
		if url := s.locate(ctx, id, seen); url != "" {
			return 0, url, nil
		}
		if seen == 0 && lastSeq == 0 {
			return s.claim(ctx, id, tenant) // nobody has it and nobody has seen it: it starts here
		}
		return 0, "", errNotHere
	}
	if !s.replicating() {
		return o.epoch, "", nil
	}
	if o.home == s.cfg.RelayID && seen <= o.epoch {
		return o.epoch, "", s.syncReplica(ctx, id, tenant, o, "")
	}
	// Another relay is (or was) home: is it alive? Ask the recorded home,
	// and, when a client has seen a later epoch than our record, also our
	// recorded replica (it may have taken over).
	var ask []string
	handoff := false
	if o.home != s.cfg.RelayID {
		ask = append(ask, o.home)
	}
	if seen > o.epoch && o.replica != "" && o.replica != s.cfg.RelayID {
		ask = append(ask, o.replica)
	}
	for _, who := range ask {
		p, live := s.peerByID(who)
		if !live {
			continue
		}
		rep, err := s.probePeer(ctx, p, id)
		if err == nil && rep.Status == peerwire.StatusHandoff {
			handoff = true // the home drains and hands the session over
			continue
		}
		if err != nil || rep.Status != peerwire.StatusOK || rep.Epoch < max(o.epoch, seen) {
			continue
		}
		switch {
		case rep.Home == s.cfg.RelayID:
		case rep.Home == who:
			// Alive and serving: send the client there.
			return 0, firstNonEmpty(rep.URL, p.URL), nil
		case rep.URL != "":
			return 0, rep.URL, nil
		}
	}
	if seen > o.epoch && o.home == s.cfg.RelayID && len(ask) == 0 {
		// Our record is stale and there is nobody to ask: refuse rather
		// than serve an epoch the client has already seen replaced.
		return 0, "", &staleError{owner{epoch: seen}}
	}
	// The home is gone: take over, above every epoch anyone has seen.
	n := owner{epoch: max(o.epoch, seen) + 1, home: s.cfg.RelayID, url: s.cfg.SelfURL}
	if err := s.writeOwner(ctx, id, n); err != nil {
		return 0, "", err
	}
	s.met.takeovers.Inc()
	if handoff {
		s.log.Info("took the session over from its draining home", "session", id, "former_home", o.home, "epoch", n.epoch)
	} else {
		s.log.Warn("took the session over from its home", "session", id, "former_home", o.home, "epoch", n.epoch)
	}
	// The former home did not answer: it is not the replica now.
	n.replica = ""
	return n.epoch, "", s.syncReplica(ctx, id, tenant, n, o.home)
}

// claim makes this relay the home of a session no relay is known to
// hold, at epoch 1 — and its replica learns so before any client is
// welcomed: a client that has seen the session finds it at the replica
// should this relay die before its first commit (no relay would know it
// otherwise, and the client, having seen epoch 1, could not start it
// afresh anywhere until this relay came back). A candidate replica that
// already knows the session sends the client to its home instead (a
// *staleError). Without a reachable replica the session starts degraded,
// or not at all with RequireReplica. Caller holds the session's stripe.
func (s *Server) claim(ctx context.Context, id, tenant string) (epoch uint64, redirect string, err error) {
	o := owner{epoch: 1, home: s.cfg.RelayID, url: s.cfg.SelfURL}
	return o.epoch, "", s.syncReplica(ctx, id, tenant, o, "")
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// askPlaced asks the relay the control plane placed a session on where
// the session lives: there, at the home it names, or nowhere yet (then
// there: it is the session's first home). "" if it does not answer or
// drains.
func (s *Server) askPlaced(ctx context.Context, id, placed string) string {
	p, live := s.peerByID(placed)
	if !live {
		return ""
	}
	rep, err := s.probePeer(ctx, p, id)
	switch {
	case err != nil || rep.Status == peerwire.StatusHandoff:
		return ""
	case rep.Status == peerwire.StatusOK && rep.Home != "" && rep.Home != p.ID:
		if h, ok := s.peerByID(rep.Home); ok && rep.Home != s.cfg.RelayID {
			return h.URL
		}
		return firstNonEmpty(rep.URL, p.URL)
	}
	return p.URL
}

var errNotHere = errors.New("relay: the session lives on another relay, none of which answered")

// locate asks the live relays about a session this relay does not know
// — those of its own region first, then the others (a session placed in
// another region, whose home died, lives on at that home's replica) — and
// returns the client URL of the relay with the newest record of it: the
// home, or a replica (which sends the client on to a live home, or takes
// the session over). "" if none knows it.
func (s *Server) locate(ctx context.Context, id string, seen uint64) string {
	var local, remote []Peer
	for _, p := range s.cfg.Cluster.Peers() {
		switch {
		case p.ID == s.cfg.RelayID || p.Addr == "":
		case p.Region == s.cfg.Region:
			local = append(local, p)
		default:
			remote = append(remote, p)
		}
	}
	if url := s.newestRecord(ctx, local, id, seen); url != "" {
		return url
	}
	return s.newestRecord(ctx, remote, id, seen)
}

// newestRecord probes peers about a session at once and returns the URL
// of the one with the newest record of it ("" if none has one).
func (s *Server) newestRecord(ctx context.Context, peers []Peer, id string, seen uint64) string {
	type answer struct {
		p   Peer
		rep *peerwire.Msg
	}
	ch := make(chan answer, len(peers))
	for _, p := range peers {
		go func() {
			rep, err := s.probePeer(ctx, p, id)
			if err != nil || rep.Status != peerwire.StatusOK {
				rep = nil
			}
			ch <- answer{p, rep}
		}()
	}
	var best *answer
	for range peers {
		a := <-ch
		if a.rep != nil && (best == nil || a.rep.Epoch > best.rep.Epoch || (a.rep.Epoch == best.rep.Epoch && a.rep.Head > best.rep.Head)) {
			best = &a
		}
		if best != nil && best.rep.Home == best.p.ID && best.rep.Epoch >= seen {
			break // the live home itself answered: no need to wait for the rest (a dead peer would cost ProbeTimeout)
		}
	}
	if best == nil {
		return ""
	}
	return best.p.URL
}

// syncReplica runs before a home serves a session it loads (after a
// restart or a takeover): its replica and it must hold the same log
// before anything is delivered or acknowledged, and the replica must know
// the home's epoch (which fences any former home). So: entries the
// replica has beyond the home's head (the home died between the replica's
// commit and its own, or the replica was home for a while) are fetched
// back; entries it lacks are sent; then the owner record is set on it.
// If the replica says another relay owns the session with a newer epoch,
// that is returned as a *staleError. Without a reachable replica this is
// an error only with RequireReplica (else the session runs degraded).
// Caller holds the session's stripe.
func (s *Server) syncReplica(ctx context.Context, id, tenant string, o owner, exclude string) error {
	if !s.replicating() {
		return nil
	}
	recorded, live := s.peerByID(o.replica)
	live = live && o.replica != s.cfg.RelayID && o.replica != exclude
	if s.mayHaveLostTail() && live {
		// This relay crashed since it last ran, and its own copies of
		// batches the replica had synced may be lost with the crash: only
		// the recorded replica can give them back. Wait for it (the
		// client retries) rather than serve a log without them, for as
		// long as the cluster counts it as a member.
		err := s.syncSettled(ctx, recorded, id, tenant, o, s.cfg.ReplicaTimeout)
		if err != nil {
			var st *staleError
			if !errors.As(err, &st) {
				s.log.Warn("the session's replica must answer before this relay serves it again after a crash", "session", id, "peer", o.replica, "err", err)
			}
		}
		return err
	}
	var cands []Peer
	skip := map[string]bool{exclude: true}
	if live && !s.links.isDown(recorded.Addr) {
		cands = append(cands, recorded) // the recorded replica first: it has the log
		skip[o.replica] = true
	}
	cands = append(cands, s.replicaCandidates(id, skip)...)
	// A first pass asks each candidate within ProbeTimeout, so a dead one
	// (often the former home's recorded replica, killed with it or just
	// before) costs little; a second pass gives those that did not answer
	// ReplicaTimeout (under load a live relay can be slower than a probe).
	var lastErr error = errNoReplica
	var slow []Peer
	for pass, timeout := range []time.Duration{s.cfg.ProbeTimeout, s.cfg.ReplicaTimeout} {
		if pass == 1 {
			cands, slow = slow, nil
		}
		for _, p := range cands {
			err := s.syncSettled(ctx, p, id, tenant, o, timeout)
			var st *staleError
			if err == nil || errors.As(err, &st) {
				return err
			}
			if errors.Is(err, errProbe) {
				slow = append(slow, p)
			}
			s.log.Warn("syncing a replica candidate failed", "session", id, "peer", p.ID, "pass", pass, "err", err)
			lastErr = err
		}
	}
	if s.cfg.RequireReplica {
		return lastErr
	}
	return nil
}

// syncSettled is syncTo, again while the candidate gained entries
// meanwhile (a concurrent takeover elsewhere, or the former home's last
// batch), up to three more times.
func (s *Server) syncSettled(ctx context.Context, p Peer, id, tenant string, o owner, probeTimeout time.Duration) error {
	err := s.syncTo(ctx, p, id, tenant, o, probeTimeout)
	for retry := 0; errors.Is(err, errAhead) && retry < 3; retry++ {
		err = s.syncTo(ctx, p, id, tenant, o, probeTimeout)
	}
	return err
}

// mayHaveLostTail reports whether this relay's store may have lost
// batches it committed unsynced (Config.SyncHome unset): it was opened
// after a crash. Such a home syncs with its recorded replica, and with it
// only, before serving a session again.
func (s *Server) mayHaveLostTail() bool {
	r, ok := s.cfg.Store.(interface{ Recovered() bool })
	return ok && r.Recovered()
}

// errProbe marks a candidate replica that did not answer the first probe
// of a sync in time.
var errProbe = errors.New("relay: candidate replica did not answer")

// syncTo brings replica candidate p in line with this home; probeTimeout
// bounds its first answer (errProbe if it does not come), ReplicaTimeout
// every later one.
func (s *Server) syncTo(ctx context.Context, p Peer, id, tenant string, o owner, probeTimeout time.Duration) error {
	call := func(m *peerwire.Msg) (*peerwire.Msg, error) { return s.callPeer(ctx, p, m, s.cfg.ReplicaTimeout) }
	rep, err := s.callPeer(ctx, p, &peerwire.Msg{Type: peerwire.TypeProbe, Session: id}, probeTimeout)
	if err != nil {
		return fmt.Errorf("%w: %w", errProbe, err)
	}
	_, mine, err := s.ownerRecord(ctx, id)
	if err != nil {
		return err
	}
	// A candidate with a record of the session under another home wins
	// if it is newer — or if this relay has none: it is claiming the
	// session, which exists elsewhere after all, so the client goes
	// there (and this relay, not its replica, records nothing of it).
	if rep.Status == peerwire.StatusOK && rep.Home != s.cfg.RelayID {
		n := owner{epoch: rep.Epoch, home: rep.Home, url: rep.URL}
		if !mine {
			return &staleError{n}
		}
		if newer(rep.Epoch, rep.Home, o.epoch, o.home) {
			if err := s.writeOwner(ctx, id, n); err != nil {
				return err
			}
			return &staleError{n}
		}
	}
	head, err := s.cfg.Store.Head(ctx, id)
	if err != nil {
		return err
	}
	// Fetch back what the replica has beyond our head.
	for rep.Status == peerwire.StatusOK && head < rep.Head {
		f, err := call(&peerwire.Msg{Type: peerwire.TypeFetch, Session: id, After: head, Upto: rep.Head})
		if err != nil {
			return err
		}
		if f.Status != peerwire.StatusOK || len(f.Entries) == 0 {
			return fmt.Errorf("relay: fetching entries after %d of %s from %s: status %d", head, id, p.ID, f.Status)
		}
		meta := metaFromPeer(f.Meta)
		for name := range meta {
			if strings.HasPrefix(name, "device/") {
				s.forgetDevice(name)
			}
		}
		if err := s.cfg.Store.Commit(ctx, id, fromPeerEntries(f.Entries), meta); err != nil {
			return err
		}
		head = f.Entries[len(f.Entries)-1].Seq
		s.met.fetched.Add(float64(len(f.Entries)))
	}
	// Send what it lacks, then our epoch.
	from := uint64(0)
	if rep.Status == peerwire.StatusOK {
		from = rep.Head
	}
	if err := s.pushEntries(ctx, p, id, tenant, o.epoch, from, head); err != nil {
		return err
	}
	dm, err := s.deviceMeta(ctx, id)
	if err != nil {
		return err
	}
	r, err := call(s.replicateMsg(id, tenant, o.epoch, head, nil, dm))
	if err != nil {
		return err
	}
	if r.Status != peerwire.StatusOK {
		return replyError(p, r)
	}
	if o.replica != p.ID {
		o.replica = p.ID
		if err := s.writeOwner(ctx, id, o); err != nil {
			return err
		}
	}
	return nil
}

// errAhead is a replica's refusal because it has entries the sender
// lacks (it gained some since the sender looked: fetch them, try again).
var errAhead = errors.New("relay: the replica holds entries this relay lacks")

func replyError(p Peer, r *peerwire.Msg) error {
	switch r.Status {
	case peerwire.StatusStale:
		return &staleError{owner{epoch: r.Epoch, home: r.Home, url: r.URL}}
	case peerwire.StatusAhead:
		return fmt.Errorf("%w: replica %s at %d", errAhead, p.ID, r.Head)
	}
	return fmt.Errorf("relay: replica %s refused (status %d): %s", p.ID, r.Status, r.Reason)
}

// handlePeer answers one request of an authenticated peer.
func (s *Server) handlePeer(node string, m *peerwire.Msg) *peerwire.Msg {
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	fail := func(err error) *peerwire.Msg {
		s.log.Warn("peer request failed", "peer", node, "type", m.Type, "session", m.Session, "err", err)
		return &peerwire.Msg{Status: peerwire.StatusError, Reason: "relay storage unavailable"}
	}
	if m.Session == "" || len(m.Session) > 128 {
		return &peerwire.Msg{Status: peerwire.StatusDenied, Reason: "no session"}
	}
	switch m.Type {
	case peerwire.TypeProbe:
		return s.probe(ctx, m.Session, fail)
	case peerwire.TypeFetch:
		if m.Upto <= m.After {
			return &peerwire.Msg{Status: peerwire.StatusDenied, Reason: "empty range"}
		}
		es, err := s.readEntries(ctx, m.Session, m.After, m.Upto, 512)
		if err != nil {
			return fail(err)
		}
		dm, err := s.deviceMeta(ctx, m.Session)
		if err != nil {
			return fail(err)
		}
		return &peerwire.Msg{Status: peerwire.StatusOK, Entries: toPeerEntries(es), Meta: dm}
	case peerwire.TypeReplicate:
		if m.Home != node || m.Epoch == 0 || m.Tenant == "" {
			return &peerwire.Msg{Status: peerwire.StatusDenied, Reason: "bad replicate request"}
		}
		return s.acceptReplica(ctx, m, fail)
	}
	return &peerwire.Msg{Status: peerwire.StatusDenied, Reason: "unknown request"}
}

func (s *Server) probe(ctx context.Context, id string, fail func(error) *peerwire.Msg) *peerwire.Msg {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil && s.draining.Load() {
		return &peerwire.Msg{Status: peerwire.StatusHandoff, Epoch: sess.epoch, Home: s.cfg.RelayID, Head: sess.committedHead()}
	}
	if sess != nil && !sess.ended.Load() {
		return &peerwire.Msg{Status: peerwire.StatusOK, Epoch: sess.epoch, Home: s.cfg.RelayID, URL: s.cfg.SelfURL, Head: sess.committedHead()}
	}
	o, ok, err := s.ownerRecord(ctx, id)
	if err != nil {
		return fail(err)
	}
	head, err := s.cfg.Store.Head(ctx, id)
	if err != nil {
		return fail(err)
	}
	if !ok && head == 0 {
		return &peerwire.Msg{Status: peerwire.StatusUnknown}
	}
	if s.draining.Load() && o.home == s.cfg.RelayID {
		// Not loaded any more (its clients left), still ours: hand it over.
		return &peerwire.Msg{Status: peerwire.StatusHandoff, Epoch: o.epoch, Home: o.home, Head: head}
	}
	return &peerwire.Msg{Status: peerwire.StatusOK, Epoch: o.epoch, Home: o.home, URL: o.url, Head: head}
}

// acceptReplica stores a replicated batch.
func (s *Server) acceptReplica(ctx context.Context, m *peerwire.Msg, fail func(error) *peerwire.Msg) *peerwire.Msg {
	if s.draining.Load() {
		return &peerwire.Msg{Status: peerwire.StatusDenied, Reason: "relay is draining"}
	}
	lk := s.stripes.of(m.Session)
	lk.Lock()
	defer lk.Unlock()
	o, ok, err := s.ownerRecord(ctx, m.Session)
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	sess := s.sessions[m.Session]
	s.mu.Unlock()
	if ok && newer(o.epoch, o.home, m.Epoch, m.Home) {
		s.met.staleRefused.Inc()
		return &peerwire.Msg{Status: peerwire.StatusStale, Epoch: o.epoch, Home: o.home, URL: o.url}
	}
	if sess != nil {
		if !newer(m.Epoch, m.Home, sess.epoch, s.cfg.RelayID) {
			s.met.staleRefused.Inc()
			return &peerwire.Msg{Status: peerwire.StatusStale, Epoch: sess.epoch, Home: s.cfg.RelayID, URL: s.cfg.SelfURL}
		}
		// This relay was a former home still holding the session: the
		// newer epoch wins.
		sess.failWith(fatalf(wire.CodeStaleEpoch, "this relay no longer owns the session; reconnect"), errStale)
	}
	head, err := s.cfg.Store.Head(ctx, m.Session)
	if err != nil {
		return fail(err)
	}
	if m.Prev > head {
		return &peerwire.Msg{Status: peerwire.StatusGap, Head: head}
	}
	if len(m.Entries) == 0 && head > m.Prev {
		// A sync from a home that lacks entries this relay has: it must
		// fetch them first.
		return &peerwire.Msg{Status: peerwire.StatusAhead, Head: head}
	}
	entries := fromPeerEntries(m.Entries)
	for i, e := range entries {
		if e.Seq != m.Prev+1+uint64(i) {
			return &peerwire.Msg{Status: peerwire.StatusDenied, Reason: "entries not contiguous"}
		}
	}
	// Entries at or below the head: a retry of a batch whose answer was
	// lost (they must be the same entries), or a divergence.
	if n := int(min(head-m.Prev, uint64(len(entries)))); n > 0 {
		have, err := s.readEntries(ctx, m.Session, m.Prev, m.Prev+uint64(n), n)
		if err != nil {
			return fail(err)
		}
		for i := range have {
			if string(have[i].Hash) != string(entries[i].Hash) {
				return &peerwire.Msg{Status: peerwire.StatusAhead, Head: head, Reason: "diverging entries"}
			}
		}
		entries = entries[n:]
	}
	meta := map[string][]byte{}
	for _, md := range m.Meta {
		if strings.HasPrefix(md.Name, "owner/") || strings.HasPrefix(md.Name, "ended/") {
			continue
		}
		meta[md.Name] = md.Blob
		if strings.HasPrefix(md.Name, "device/") {
			s.forgetDevice(md.Name)
		}
	}
	if n := (owner{epoch: m.Epoch, home: m.Home, url: m.URL}); !ok || o.epoch != n.epoch || o.home != n.home || o.url != n.url {
		meta[ownerMeta(m.Session)] = n.encode()
	}
	if _, known, err := s.cfg.Store.Meta(ctx, "session/"+m.Session); err != nil {
		return fail(err)
	} else if !known {
		meta["session/"+m.Session] = []byte(m.Tenant)
	}
	if len(entries) > 0 || len(meta) > 0 {
		if err := s.cfg.Store.Commit(ctx, m.Session, entries, meta); err != nil {
			return fail(err)
		}
		s.met.replicated.Add(float64(len(entries)))
	}
	return &peerwire.Msg{Status: peerwire.StatusOK, Head: max(head, m.Prev+uint64(len(m.Entries)))}
}
