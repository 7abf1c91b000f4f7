package client

import (
	"github.com/stapes-relay/stapes/relay/wire"
)

type ackKey struct {
	seq   uint64
	stage wire.Stage
}

// pendingAck is an ACK not yet confirmed by a RECEIPT from this client's
// subject.
type pendingAck struct {
	ackKey
	reason string
	auto   bool   // queued by auto-ack, nobody waits for it
	gen    uint64 // connection generation it was last written on
	ended  bool
	err    error // set before done is closed
	done   chan struct{}
}

// maxFinals bounds how many seqs' final stages are remembered to refuse a
// second, different final ack.
const maxFinals = 4096

// ackBook keeps acks until the relay confirms them with a RECEIPT from this
// client's subject for the same ref_seq and stage (or, for a final stage,
// any final RECEIPT for ref_seq); unconfirmed acks are written again
// on every connection (the relay ignores a stage it already recorded). It is
// not safe for concurrent use; the Client guards it.
type ackBook struct {
	byKey map[ackKey]*pendingAck
	list  []*pendingAck // oldest first; may hold ended acks, compacted lazily
	// due holds, oldest first, the acks not yet written on connection gen.
	gen        uint64
	due        []*pendingAck
	finals     map[uint64]wire.Stage
	finalOrder []uint64
}

// add queues an ack, or returns the one already queued for the same seq and
// stage. Beyond limit unconfirmed acks the oldest automatic `received` acks
// are forgotten; forgot counts them.
func (b *ackBook) add(seq uint64, stage wire.Stage, reason string, auto bool, limit int) (a *pendingAck, forgot int, err error) {
	if b.byKey == nil {
		b.byKey = make(map[ackKey]*pendingAck)
		b.finals = make(map[uint64]wire.Stage)
	}
	k := ackKey{seq, stage}
	if a := b.byKey[k]; a != nil {
		a.auto = a.auto && auto
		return a, 0, nil
	}
	if stage.Final() {
		if prev, ok := b.finals[seq]; ok {
			if prev != stage {
				return nil, 0, ErrAlreadyFinal
			}
			// Already confirmed: nothing to send, nothing to wait for.
			a := &pendingAck{ackKey: k, ended: true, done: make(chan struct{})}
			close(a.done)
			return a, 0, nil
		}
		b.rememberFinal(seq, stage)
	}
	a = &pendingAck{ackKey: k, reason: reason, auto: auto, done: make(chan struct{})}
	b.byKey[k] = a
	b.list = append(b.list, a)
	b.due = append(b.due, a)
	for i := 0; len(b.byKey) > limit && i < len(b.list); i++ {
		if x := b.list[i]; x.auto && !x.ended && x != a {
			b.end(x, nil)
			forgot++
		}
	}
	b.compact()
	return a, forgot, nil
}

func (b *ackBook) rememberFinal(seq uint64, stage wire.Stage) {
	if _, ok := b.finals[seq]; ok {
		return
	}
	b.finals[seq] = stage
	b.finalOrder = append(b.finalOrder, seq)
	if len(b.finalOrder) > maxFinals {
		delete(b.finals, b.finalOrder[0])
		b.finalOrder = b.finalOrder[1:]
	}
}

// next returns the oldest ack not yet written on connection gen and takes
// it off that connection's due list (the caller writes it).
func (b *ackBook) next(gen uint64) *pendingAck {
	if gen != b.gen {
		b.gen = gen
		b.due = b.due[:0]
		for _, a := range b.list {
			if !a.ended {
				b.due = append(b.due, a)
			}
		}
	}
	for len(b.due) > 0 {
		a := b.due[0]
		b.due = b.due[1:]
		if !a.ended {
			return a
		}
	}
	return nil
}

// confirm ends the ack for seq and stage, seen back as a RECEIPT from this
// client's subject, or a final stage of seq from anyone. A final stage also
// ends any other final ack for seq: the relay ignores a second final stage
// and would never confirm it.
func (b *ackBook) confirm(seq uint64, stage wire.Stage) {
	if b.byKey == nil {
		return
	}
	defer b.compact()
	if a := b.byKey[ackKey{seq, stage}]; a != nil {
		b.end(a, nil)
	}
	if stage.Final() {
		b.rememberFinal(seq, stage)
		for _, other := range []wire.Stage{wire.StageApplied, wire.StageRejected} {
			if a := b.byKey[ackKey{seq, other}]; a != nil {
				b.end(a, ErrAlreadyFinal)
			}
		}
	}
}

// fail ends every ack for seq with err (the relay refused them).
func (b *ackBook) fail(seq uint64, err error) {
	defer b.compact()
	for _, s := range []wire.Stage{wire.StageReceived, wire.StageApplied, wire.StageRejected} {
		if a := b.byKey[ackKey{seq, s}]; a != nil {
			b.end(a, err)
		}
	}
}

func (b *ackBook) end(a *pendingAck, err error) {
	delete(b.byKey, a.ackKey)
	a.ended, a.err = true, err
	close(a.done)
}

// compact drops ended acks from list once they are the majority.
func (b *ackBook) compact() {
	if len(b.list) <= 2*len(b.byKey)+16 {
		return
	}
	live := b.list[:0]
	for _, x := range b.list {
		if !x.ended {
			live = append(live, x)
		}
	}
	clear(b.list[len(live):])
	b.list = live
}

// inflight counts acks written on gen and not yet confirmed.
func (b *ackBook) inflight(gen uint64) int {
	n := 0
	for _, a := range b.byKey {
		if a.gen == gen {
			n++
		}
	}
	return n
}

func (b *ackBook) len() int { return len(b.byKey) }

// drain ends every ack with err.
func (b *ackBook) drain(err error) {
	for _, a := range b.list {
		if !a.ended {
			b.end(a, err)
		}
	}
	b.list, b.due = nil, nil
}
