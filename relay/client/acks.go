package client

import (
	"slices"

	"github.com/stapes-relay/stapes/relay/wire"
)

type ackKey struct {
	seq   uint64
	stage wire.Stage
}

// pendingAck is an ACK not yet confirmed by a RECEIPT from this client.
type pendingAck struct {
	ackKey
	reason string
	auto   bool   // queued by auto-ack, nobody waits for it
	gen    uint64 // connection generation it was last written on
	err    error  // set before done is closed
	done   chan struct{}
}

// maxFinals bounds how many seqs' final stages are remembered to refuse a
// second, different final ack.
const maxFinals = 4096

// ackBook keeps acks until the relay confirms them with a RECEIPT from this
// client for the same ref_seq and stage; unconfirmed acks are written again
// on every connection (the relay ignores a stage it already recorded). It is
// not safe for concurrent use; the Client guards it.
type ackBook struct {
	list       []*pendingAck
	byKey      map[ackKey]*pendingAck
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
			a := &pendingAck{ackKey: k, done: make(chan struct{})}
			close(a.done)
			return a, 0, nil
		}
		b.rememberFinal(seq, stage)
	}
	a = &pendingAck{ackKey: k, reason: reason, auto: auto, done: make(chan struct{})}
	b.list = append(b.list, a)
	b.byKey[k] = a
	for len(b.list) > limit {
		i := slices.IndexFunc(b.list, func(x *pendingAck) bool { return x.auto && x != a })
		if i < 0 {
			break
		}
		b.end(b.list[i], nil)
		forgot++
	}
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

// next returns the oldest ack not yet written on connection gen.
func (b *ackBook) next(gen uint64) *pendingAck {
	for _, a := range b.list {
		if a.gen != gen {
			return a
		}
	}
	return nil
}

// confirm ends the ack for seq and stage, seen back as a RECEIPT from this
// client. A final stage also ends any other final ack for seq: the relay
// ignores a second final stage and would never confirm it.
func (b *ackBook) confirm(seq uint64, stage wire.Stage) {
	if b.byKey == nil {
		return
	}
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
	for _, s := range []wire.Stage{wire.StageReceived, wire.StageApplied, wire.StageRejected} {
		if a := b.byKey[ackKey{seq, s}]; a != nil {
			b.end(a, err)
		}
	}
}

func (b *ackBook) end(a *pendingAck, err error) {
	delete(b.byKey, a.ackKey)
	if i := slices.Index(b.list, a); i >= 0 {
		b.list = slices.Delete(b.list, i, i+1)
	}
	a.err = err
	close(a.done)
}

// inflight counts acks written on gen and not yet confirmed.
func (b *ackBook) inflight(gen uint64) int {
	n := 0
	for _, a := range b.list {
		if a.gen == gen {
			n++
		}
	}
	return n
}

func (b *ackBook) len() int { return len(b.list) }

// drain ends every ack with err.
func (b *ackBook) drain(err error) {
	for len(b.list) > 0 {
		b.end(b.list[0], err)
	}
}
