package client

import (
	"slices"
	"time"
)

// outgoing is a durable send the client still owns.
type outgoing struct {
	sent     *Sent
	frame    []byte    // the encoded SEND, written again unchanged on retry
	seq      uint64    // from PERSISTED; 0 until then
	gen      uint64    // connection generation it was last written on; 0 = write it
	writes   int       // times written
	attempts int       // retryable ERRORs so far
	retryAt  time.Time // not written again before this
	early    []Receipt // receipts naming its client id that came before PERSISTED
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
	list  []*outgoing
	byID  map[string]*outgoing
	bySeq map[uint64]*outgoing
}

func (q *pendingQueue) len() int { return len(q.list) }

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
	q.list = append(q.list, o)
	q.byID[o.sent.id] = o
	return true
}

// next returns the first message, in Send order, that still has to be
// written on connection gen. A message waiting out a retry delay holds back
// every later unwritten one, so the relay sees them in order; wait is then
// the time left.
func (q *pendingQueue) next(gen uint64, now time.Time) (o *outgoing, wait time.Duration) {
	for _, o := range q.list {
		if o.seq != 0 || o.gen == gen {
			continue
		}
		if d := o.retryAt.Sub(now); d > 0 {
			return nil, d
		}
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

// retry schedules o to be written again after delay.
func (q *pendingQueue) retry(o *outgoing, now time.Time, delay time.Duration) {
	o.attempts++
	o.gen = 0
	o.retryAt = now.Add(delay)
}

func (q *pendingQueue) remove(o *outgoing) {
	if q.byID[o.sent.id] != o {
		return
	}
	delete(q.byID, o.sent.id)
	if o.seq != 0 {
		delete(q.bySeq, o.seq)
	}
	if i := slices.Index(q.list, o); i >= 0 {
		q.list = slices.Delete(q.list, i, i+1)
	}
}

// inflight counts messages written on gen that have no PERSISTED yet.
func (q *pendingQueue) inflight(gen uint64) int {
	n := 0
	for _, o := range q.list {
		if o.seq == 0 && o.gen == gen {
			n++
		}
	}
	return n
}

// drain removes and returns every message.
func (q *pendingQueue) drain() []*outgoing {
	l := q.list
	*q = pendingQueue{}
	return l
}
