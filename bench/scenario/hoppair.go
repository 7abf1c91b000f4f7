package scenario

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"

	"github.com/stapes-relay/stapes/bench/baseline"
	"github.com/stapes-relay/stapes/bench/relayconn"
	"github.com/stapes-relay/stapes/relay/wire"
)

// pair is the two ends of a round trip: send goes out from A; whatever
// comes back to A is handed to the pair's onReturn.
type pair interface {
	send(ctx context.Context, payload []byte) error
	close()
}

// appKind is the message kind of the hop: an application kind (class
// signal, opaque to the relay).
const appKind wire.Kind = 64

// relayPair is A (clinician) and B (patient) in one session of the relay;
// B sends every DELIVER back as a SEND.
type relayPair struct {
	a, b    *relayconn.Conn
	durable bool
	ids     atomic.Uint64
}

func dialRelayPair(ctx context.Context, e *Env, transport, addr string, durable bool, onReturn func([]byte)) (*relayPair, error) {
	sess := e.Session("hop")
	ta, err := e.Token(sess, "a", "clinician")
	if err != nil {
		return nil, err
	}
	tb, err := e.Token(sess, "b", "patient")
	if err != nil {
		return nil, err
	}
	p := &relayPair{durable: durable}
	var b atomic.Pointer[relayconn.Conn]
	bc, err := relayconn.Dial(ctx, relayconn.Options{Transport: transport, Addr: addr, TLS: e.ClientTLS(), Token: tb,
		OnFrame: func(f *wire.Frame) {
			if f.Type != wire.TypeDeliver {
				return
			}
			if c := b.Load(); c != nil {
				_ = c.Send(context.Background(), p.frame("b", f.Payload))
			}
		}})
	if err != nil {
		return nil, err
	}
	b.Store(bc)
	p.b = bc
	ac, err := relayconn.Dial(ctx, relayconn.Options{Transport: transport, Addr: addr, TLS: e.ClientTLS(), Token: ta,
		OnFrame: func(f *wire.Frame) {
			if f.Type == wire.TypeDeliver {
				onReturn(f.Payload)
			}
		}})
	if err != nil {
		bc.Close()
		return nil, err
	}
	p.a = ac
	return p, nil
}

func (p *relayPair) frame(who string, payload []byte) *wire.Frame {
	f := &wire.Frame{Type: wire.TypeSend, Kind: appKind, Payload: payload}
	if p.durable {
		f.Kind, f.Flags = wire.KindChat, wire.FlagDurable
		f.ClientID = fmt.Sprintf("%s%d", who, p.ids.Add(1))
	}
	return f
}

func (p *relayPair) send(ctx context.Context, payload []byte) error {
	return p.a.Send(ctx, p.frame("a", payload))
}

func (p *relayPair) close() {
	p.a.Close()
	p.b.Close()
}

// wsPair is A and B joined by the WebSocket forwarder, or A alone on the
// echo endpoint (b nil).
type wsPair struct {
	a, b *websocket.Conn
	wg   sync.WaitGroup
}

func dialWS(ctx context.Context, e *Env, addr, path string) (*websocket.Conn, error) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: e.ClientTLS(), DisableKeepAlives: true}}
	ws, _, err := websocket.Dial(ctx, "wss://"+addr+path, &websocket.DialOptions{HTTPClient: hc, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	ws.SetReadLimit(1 << 20)
	return ws, nil
}

func dialWSPair(ctx context.Context, e *Env, addr string, echo bool, onReturn func([]byte)) (*wsPair, error) {
	p := &wsPair{}
	var err error
	if echo {
		if p.a, err = dialWS(ctx, e, addr, baseline.EchoPath); err != nil {
			return nil, err
		}
	} else {
		id := e.Session("pair")
		if p.a, err = dialWS(ctx, e, addr, baseline.ForwardPath+"?pair="+id); err != nil {
			return nil, err
		}
		if p.b, err = dialWS(ctx, e, addr, baseline.ForwardPath+"?pair="+id); err != nil {
			p.a.CloseNow()
			return nil, err
		}
		b := p.b
		p.wg.Go(func() {
			for {
				typ, m, err := b.Read(context.Background())
				if err != nil {
					return
				}
				if err := b.Write(context.Background(), typ, m); err != nil {
					return
				}
			}
		})
	}
	a := p.a
	p.wg.Go(func() {
		for {
			_, m, err := a.Read(context.Background())
			if err != nil {
				return
			}
			onReturn(m)
		}
	})
	return p, nil
}

func (p *wsPair) send(ctx context.Context, payload []byte) error {
	return p.a.Write(ctx, websocket.MessageBinary, payload)
}

func (p *wsPair) close() {
	p.a.CloseNow()
	if p.b != nil {
		p.b.CloseNow()
	}
	p.wg.Wait()
}

// quicPair is A and B joined by the QUIC forwarder (a stream each), or A
// alone on an echo stream. Messages are length-prefixed like stapes frames.
type quicPair struct {
	conns []*quic.Conn
	a     *quic.Stream
	mu    sync.Mutex // one writer on a
	wg    sync.WaitGroup
}

func dialQUICStream(ctx context.Context, e *Env, addr string, header []byte) (*quic.Conn, *quic.Stream, error) {
	tc := e.ClientTLS()
	tc.NextProtos = []string{baseline.QUICProto}
	qc, err := quic.DialAddr(ctx, addr, tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("quic dial: %w", err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, nil, err
	}
	if _, err := st.Write(header); err != nil {
		qc.CloseWithError(0, "")
		return nil, nil, err
	}
	return qc, st, nil
}

func dialQUICPair(ctx context.Context, e *Env, addr string, echo bool, onReturn func([]byte)) (*quicPair, error) {
	p := &quicPair{}
	if echo {
		qc, st, err := dialQUICStream(ctx, e, addr, []byte{baseline.ModeEcho})
		if err != nil {
			return nil, err
		}
		p.conns, p.a = []*quic.Conn{qc}, st
	} else {
		hdr := make([]byte, 9)
		hdr[0] = baseline.ModeForward
		_, _ = rand.Read(hdr[1:])
		qa, sa, err := dialQUICStream(ctx, e, addr, hdr)
		if err != nil {
			return nil, err
		}
		qb, sb, err := dialQUICStream(ctx, e, addr, hdr)
		if err != nil {
			qa.CloseWithError(0, "")
			return nil, err
		}
		p.conns, p.a = []*quic.Conn{qa, qb}, sa
		p.wg.Go(func() {
			br := bufio.NewReaderSize(sb, 4096)
			for {
				m, err := wire.ReadFrame(br, 1<<20)
				if err != nil {
					return
				}
				if err := wire.WriteFrame(sb, m); err != nil {
					return
				}
			}
		})
	}
	a := p.a
	p.wg.Go(func() {
		br := bufio.NewReaderSize(a, 4096)
		for {
			m, err := wire.ReadFrame(br, 1<<20)
			if err != nil {
				return
			}
			onReturn(m)
		}
	})
	return p, nil
}

func (p *quicPair) send(ctx context.Context, payload []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return wire.WriteFrame(p.a, payload)
}

func (p *quicPair) close() {
	for _, qc := range p.conns {
		qc.CloseWithError(0, "")
	}
	p.wg.Wait()
}

// payload builds a 256-byte message carrying the op id and the epoch of
// the load it belongs to.
func payload(id uint64, epoch uint32) []byte {
	b := make([]byte, 256)
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint32(b[8:], epoch)
	return b
}
