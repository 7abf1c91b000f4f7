package baseline

import (
	"context"
	"io"
	"sync"

	"github.com/quic-go/quic-go"
)

// ALPN of the QUIC baselines.
const QUICProto = "stapes-bench"

// Stream modes: the first byte a client writes on its stream.
const (
	ModeEcho    = 'e' // the stream is copied back to itself
	ModeForward = 'f' // followed by an 8-byte pair id; the two streams with one id are joined
)

// QUICForwarder joins pairs of QUIC streams with io.Copy in both
// directions, or echoes a stream: the QUIC counterpart of WSForwarder.
type QUICForwarder struct {
	mu      sync.Mutex // guards waiting
	waiting map[[8]byte]chan *quic.Stream
	wg      sync.WaitGroup
}

// NewQUICForwarder returns a forwarder.
func NewQUICForwarder() *QUICForwarder {
	return &QUICForwarder{waiting: map[[8]byte]chan *quic.Stream{}}
}

// Serve accepts connections until ln fails or ctx ends, then waits for
// the connections it started.
func (f *QUICForwarder) Serve(ctx context.Context, ln *quic.Listener) error {
	defer f.wg.Wait()
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			return err
		}
		f.wg.Go(func() { f.serveConn(ctx, qc) })
	}
}

func (f *QUICForwarder) serveConn(ctx context.Context, qc *quic.Conn) {
	defer qc.CloseWithError(0, "")
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		return
	}
	var mode [1]byte
	if _, err := io.ReadFull(st, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case ModeEcho:
		_, _ = io.Copy(st, st)
		return
	case ModeForward:
	default:
		return
	}
	var id [8]byte
	if _, err := io.ReadFull(st, id[:]); err != nil {
		return
	}
	f.mu.Lock()
	if ch, ok := f.waiting[id]; ok {
		delete(f.waiting, id)
		f.mu.Unlock()
		select {
		case ch <- st:
		case <-ctx.Done():
			return
		}
		<-qc.Context().Done() // the first stream's handler runs the pair
		return
	}
	ch := make(chan *quic.Stream)
	f.waiting[id] = ch
	f.mu.Unlock()
	var other *quic.Stream
	select {
	case other = <-ch:
	case <-ctx.Done():
		return
	case <-qc.Context().Done():
		f.mu.Lock()
		delete(f.waiting, id)
		f.mu.Unlock()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(other, st); other.Close() })
	wg.Go(func() { _, _ = io.Copy(st, other); st.Close() })
	wg.Wait()
	other.CancelRead(0)
}
