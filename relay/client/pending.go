package client

import (
	"cmp"
	"slices"
	"time"
)

// outgoing is a durable send the client still owns.
type outgoing struct {
	sent     *Sent
	frame    []byte    // the encoded SEND, written again unchanged on retry
	order    uint64    // Send order
	seq      uint64    // from PERSISTED; 0 until then
	gen      uint64    // connection generation it was last written on; 0 = none
	writes   int       // times written
	attempts int       // retryable ERRORs so far
	retryAt  time.Time // not written again before this
	early    []Receipt // receipts naming its client id that came before PERSISTED
	removed  bool
}

// maxEarly bounds receipts kept per message while its seq is unknown.
const maxEarly = 8

// pendingQueue holds durable sends in Send order until they end. It is not
// safe for concurrent use; the Client guards it.
//
// A message is written on every connection until PERSISTED names its seq
// (the relay answers a repeated client id with the original seq). Receipts
// are matched by that seq, which is exact: a receipt about another sender's
// message never carries one of our seqs. After a reconnect a receipt can
// arrive before the PERSISTED of the rewritten SEND (the log backlog comes
// first); such receipts are kept by client id and matched once the seq is
// known.
type pendingQueue struct {
	byID  map[string]*outgoing
	bySeq map[uint64]*outgoing
	order uint64 // next Send order
	// due holds, in Send order, the messages not yet written on connection
	// gen; it is rebuilt from byID when the generation changes.
	gen uint64
	due []*outgoing
}

func (q *pendingQueue) len() int { return len(q.byID) }

func (q *pendingQueue) get(id string) *outgoing { return q.byID[id] }

// add appends o; false if its client id is already pending.
func (q *pendingQueue) add(o *outgoing) bool {
	if q.byID == nil {
		q.byID = make(map[string]*outgoing)
		q.bySeq = make(map[uint64]*outgoing)
	}
	if _, dup := q.byID[o.sent.id]; dup {
		return false
	}
	q.order++
	o.order = q.order
	q.byID[o.sent.id] = o
	q.due = append(q.due, o)
	return true
}

// next returns the first message, in Send order, that still has to be
// written on connection gen, and takes it off that connection's due list
// (the caller writes it). A message waiting out a retry delay holds back
// every later one, so the relay sees them in order; wait is then the time
// left.
func (q *pendingQueue) next(gen uint64, now time.Time) (o *outgoing, wait time.Duration) {
	if gen != q.gen {
		q.gen = gen
		q.due = q.due[:0]
		for _, o := range q.byID {
			if o.seq == 0 {
				q.due = append(q.due, o)
			}
		}
		slices.SortFunc(q.due, func(a, b *outgoing) int { return cmp.Compare(a.order, b.order) })
	}
	for len(q.due) > 0 {
		o := q.due[0]
		if o.removed || o.seq != 0 {
			q.due = q.due[1:]
			continue
		}
		if d := o.retryAt.Sub(now); d > 0 {
			return nil, d
		}
		q.due = q.due[1:]
		return o, 0
	}
	return nil, 0
}

// persisted records the seq of client id and returns the message (nil if
// unknown) and the early receipts that turn out to be about it.
func (q *pendingQueue) persisted(id string, seq uint64) (*outgoing, []Receipt) {
	o := q.byID[id]
	if o == nil || o.seq != 0 {
		return o, nil
	}
	o.seq = seq
	q.bySeq[seq] = o
	var mine []Receipt
	for _, r := range o.early {
		if r.RefSeq == seq {
			mine = append(mine, r)
		}
	}
	o.early = nil
	return o, mine
}

// receipt returns the message r is about, or nil. A receipt naming a
// pending client id whose seq is not known yet is kept for persisted.
func (q *pendingQueue) receipt(r Receipt, refClientID string) *outgoing {
	if o := q.bySeq[r.RefSeq]; o != nil {
		return o
	}
	if o := q.byID[refClientID]; o != nil && o.seq == 0 && len(o.early) < maxEarly {
		o.early = append(o.early, r)
	}
	return nil
}

// retry puts o, refused for now on connection gen, back in its place on
// that connection's due list, to be written after delay.
func (q *pendingQueue) retry(o *outgoing, gen uint64, now time.Time, delay time.Duration) {
	o.attempts++
	o.retryAt = now.Add(delay)
	if gen != q.gen {
		return // the due list is rebuilt for the next connection anyway
	}
	i, found := slices.BinarySearchFunc(q.due, o.order, func(x *outgoing, order uint64) int { return cmp.Compare(x.order, order) })
	if !found {
		q.due = slices.Insert(q.due, i, o)
	}
}

func (q *pendingQueue) remove(o *outgoing) {
	if q.byID[o.sent.id] != o {
		return
	}
	o.removed = true
	delete(q.byID, o.sent.id)
	if o.seq != 0 {
		delete(q.bySeq, o.seq)
	}
}

// inflight counts messages written on gen that have no PERSISTED yet.
func (q *pendingQueue) inflight(gen uint64) int {
	n := 0
	for _, o := range q.byID {
		if o.seq == 0 && o.gen == gen {
			n++
		}
	}
	return n
}

// drain removes and returns every message.
func (q *pendingQueue) drain() []*outgoing {
	all := make([]*outgoing, 0, len(q.byID))
	for _, o := range q.byID {
		all = append(all, o)
	}
	*q = pendingQueue{}
	return all
}
