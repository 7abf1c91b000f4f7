package baseline

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/coder/websocket"
)

// Paths of the WebSocket baselines.
const (
	ForwardPath = "/fwd"  // ?pair=ID: the two connections with the same ID are joined
	EchoPath    = "/echo" // every message is sent back
)

// WSForwarder joins pairs of WebSocket connections and copies every
// message from one to the other with io.Copy: the least a relay hop can
// do over the same transport and framing.
type WSForwarder struct {
	mu      sync.Mutex // guards waiting
	waiting map[string]chan pairing
}

// pairing hands the second connection of a pair to the first one's
// handler, which closes done when the pair has ended.
type pairing struct {
	ws   *websocket.Conn
	done chan struct{}
}

// NewWSForwarder returns a forwarder and echo handler.
func NewWSForwarder() *WSForwarder {
	return &WSForwarder{waiting: map[string]chan pairing{}}
}

// ServeHTTP serves ForwardPath and EchoPath.
func (f *WSForwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	ws.SetReadLimit(1 << 20)
	defer ws.CloseNow()
	ctx := r.Context()
	if r.URL.Path == EchoPath {
		copyMessages(ctx, ws, ws)
		return
	}
	id := r.URL.Query().Get("pair")
	f.mu.Lock()
	peer, ok := f.waiting[id]
	if ok {
		delete(f.waiting, id)
		f.mu.Unlock()
		p := pairing{ws: ws, done: make(chan struct{})}
		select {
		case peer <- p:
			<-p.done
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan pairing)
	f.waiting[id] = ch
	f.mu.Unlock()
	var p pairing
	select {
	case p = <-ch:
	case <-ctx.Done():
		f.mu.Lock()
		delete(f.waiting, id)
		f.mu.Unlock()
		return
	}
	defer close(p.done)
	other := p.ws
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { copyMessages(ctx, ws, other); cancel() })
	wg.Go(func() { copyMessages(ctx, other, ws); cancel() })
	wg.Wait()
	other.CloseNow()
}

// copyMessages copies each message from src to dst until either fails.
func copyMessages(ctx context.Context, dst, src *websocket.Conn) {
	for {
		typ, r, err := src.Reader(ctx)
		if err != nil {
			return
		}
		w, err := dst.Writer(ctx, typ)
		if err != nil {
			return
		}
		if _, err := io.Copy(w, r); err != nil {
			return
		}
		if err := w.Close(); err != nil {
			return
		}
	}
}
