package storage

// Pebble makes a committed batch visible to readers as soon as it is in the
// memtable, before its WAL fsync has finished (and whether or not the fsync
// then succeeds). Readers of this store must only see durable data: a relay
// that delivered seq 10 from an unsynced batch, and then lost it, would
// reuse seq 10 for another message after a restart. So the store tracks the
// Commit in progress for each session and bounds every read by the head the
// session had before it: anything above that bound was read from a batch
// whose Commit has not returned.
//
// The reads follow one pattern: read from Pebble first, then look at the
// in-progress Commits, then at the failure. A Commit still applying then
// bounds the read; a Commit that was applying during the read but is gone
// now has either synced or set the failure, which the final check catches.

// maxCachedHeads bounds the cache of synced session heads; when full it is
// dropped and refilled (a miss costs one Pebble lookup).
const maxCachedHeads = 1 << 16

// inflight is a Commit in progress for one session.
type inflight struct {
	applying bool              // the batch has been handed to Pebble
	base     uint64            // the session's durable head before this Commit
	meta     map[string][]byte // the meta names it writes (set with applying)
	done     chan struct{}     // closed when the Commit returns
}

// claim registers a Commit for session. ok is false if one is already in
// progress. head, cached is the durable head if the cache has it.
func (s *Store) claim(session string) (in *inflight, head uint64, cached, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.committing[session]; busy {
		return nil, 0, false, false
	}
	in = &inflight{done: make(chan struct{})}
	s.committing[session] = in
	head, cached = s.heads[session]
	return in, head, cached, true
}

// applying marks in as about to hand its batch to Pebble.
func (s *Store) applying(in *inflight, base uint64, meta map[string][]byte) {
	s.mu.Lock()
	in.applying, in.base, in.meta = true, base, meta
	s.mu.Unlock()
}

// release ends the Commit; if it synced, head is the session's new durable
// head.
func (s *Store) release(session string, in *inflight, head uint64, synced bool) {
	s.mu.Lock()
	delete(s.committing, session)
	if synced {
		if _, ok := s.heads[session]; !ok && len(s.heads) >= maxCachedHeads {
			clear(s.heads)
		}
		s.heads[session] = head
	}
	s.mu.Unlock()
	close(in.done)
}

// durableBound returns the highest seq of the session a read may report
// (limited false: no limit). Call it after reading from Pebble.
func (s *Store) durableBound(session string) (bound uint64, limited bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.committing[session]; ok && in.applying {
		return in.base, true
	}
	return 0, false
}

// cachedHead returns the session's durable head if known without Pebble.
func (s *Store) cachedHead(session string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in, ok := s.committing[session]; ok && in.applying {
		return in.base, true
	}
	h, ok := s.heads[session]
	return h, ok
}

// metaWriters returns the done channels of the Commits applying a write of
// the named blob. Call it after reading from Pebble.
func (s *Store) metaWriters(name string) []chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	var chs []chan struct{}
	for _, in := range s.committing {
		if _, ok := in.meta[name]; ok && in.applying {
			chs = append(chs, in.done)
		}
	}
	return chs
}
