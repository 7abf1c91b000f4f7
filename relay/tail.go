package relay

// tailRing holds the most recent committed entries of a session, indexed
// by seq, so live delivery rarely reads the store. It starts small and
// grows to max entries; pushing never copies the held entries (except on
// growth). It also holds at most maxBytes of frames (0: no byte bound),
// dropping the oldest, so a busy session with large payloads stays small.
type tailRing struct {
	buf         []entry
	first, last uint64 // seqs held: first..last (first == 0: empty)
	max         int
	maxBytes    int
	bytes       int
}

func (r *tailRing) push(e entry) {
	if r.first == 0 || e.seq != r.last+1 {
		r.first, r.bytes = e.seq, 0 // first entry, or a gap (never expected): restart
		clear(r.buf)
	}
	if n := int(e.seq - r.first + 1); n > len(r.buf) && len(r.buf) < r.max {
		r.grow(min(max(16, 2*len(r.buf)), r.max))
	}
	if int(e.seq-r.first+1) > len(r.buf) {
		r.drop() // the slot e takes
	}
	r.buf[e.seq%uint64(len(r.buf))] = e
	r.last = e.seq
	r.bytes += len(e.frame)
	for r.maxBytes > 0 && r.bytes > r.maxBytes && r.first < r.last {
		r.drop()
	}
}

// drop forgets the oldest entry.
func (r *tailRing) drop() {
	i := r.first % uint64(len(r.buf))
	r.bytes -= len(r.buf[i].frame)
	r.buf[i] = entry{}
	r.first++
}

func (r *tailRing) grow(n int) {
	nb := make([]entry, n)
	if r.first != 0 {
		for s := r.first; s <= r.last; s++ {
			nb[s%uint64(n)] = r.buf[s%uint64(len(r.buf))]
		}
	}
	r.buf = nb
}

// get returns the entry with seq, if held.
func (r *tailRing) get(seq uint64) (entry, bool) {
	if r.first == 0 || seq < r.first || seq > r.last {
		return entry{}, false
	}
	return r.buf[seq%uint64(len(r.buf))], true
}
