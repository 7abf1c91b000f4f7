package relay

// tailRing holds the most recent committed entries of a session, indexed
// by seq, so live delivery rarely reads the store. It starts small and
// grows to max; pushing never copies the held entries (except on growth).
type tailRing struct {
	buf         []entry
	first, last uint64 // seqs held: first..last (first == 0: empty)
	max         int
}

func (r *tailRing) push(e entry) {
	if r.first == 0 || e.seq != r.last+1 {
		r.first = e.seq // first entry, or a gap (never expected): restart
	}
	if n := int(e.seq - r.first + 1); n > len(r.buf) && len(r.buf) < r.max {
		r.grow(min(max(16, 2*len(r.buf)), r.max))
	}
	if int(e.seq-r.first+1) > len(r.buf) {
		r.first = e.seq - uint64(len(r.buf)) + 1
	}
	r.buf[e.seq%uint64(len(r.buf))] = e
	r.last = e.seq
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
