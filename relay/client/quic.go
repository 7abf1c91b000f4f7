package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/stapes-relay/stapes/relay/wire"
)

// quicTransport carries length-prefixed frames on one client-opened
// bidirectional stream per class, each starting with its class byte. The
// control stream is opened at dial, the others after WELCOME.
//
// Streams cannot be selected on, so the transport owns one pump goroutine
// per stream that reads frames and hands them to read, in order per stream.
// A failure of any stream ends the connection.
type quicTransport struct {
	conn    *quic.Conn
	udp     *quic.Transport               // nil unless Config.ListenPacket gave the socket
	streams [wire.NumClasses]*quic.Stream // [0] from dial, the rest from established

	in      chan []byte   // frames from the pumps
	done    chan struct{} // closed by close
	pumps   sync.WaitGroup
	live    atomic.Int32  // pumps running
	ended   chan struct{} // closed when the last pump has exited
	endOnce sync.Once

	errOnce sync.Once
	err     error // the first stream error; set before the connection is closed

	closeOnce sync.Once
}

var _ transport = (*quicTransport)(nil)

func dialQUIC(ctx context.Context, d *dialer, addr string) (*quicTransport, error) {
	tc := &tls.Config{}
	if d.tls != nil {
		tc = d.tls.Clone()
	}
	tc.NextProtos = []string{Subprotocol}
	conn, udp, err := quicDial(ctx, d, addr, tc)
	if err != nil {
		return nil, fmt.Errorf("client: quic dial: %w", err)
	}
	t := &quicTransport{conn: conn, udp: udp, in: make(chan []byte), done: make(chan struct{}), ended: make(chan struct{})}
	if err := t.open(ctx, wire.ClassControl, readLimit(0)); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// quicDial connects to addr, on a socket of d.listenPacket's when it is
// set (the returned transport then owns that socket).
func quicDial(ctx context.Context, d *dialer, addr string, tc *tls.Config) (*quic.Conn, *quic.Transport, error) {
	if d.listenPacket == nil {
		conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{})
		return conn, nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	pc, err := d.listenPacket(ctx)
	if err != nil {
		return nil, nil, err
	}
	tr := &quic.Transport{Conn: pc}
	conn, err := tr.Dial(ctx, ua, tc, &quic.Config{})
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, nil, err
	}
	return conn, tr, nil
}

// open opens the stream of class, writes its class byte and starts its pump.
func (t *quicTransport) open(ctx context.Context, class wire.Class, limit int) error {
	s, err := t.conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("client: quic open %v stream: %w", class, quicError(err))
	}
	t.streams[class] = s
	if err := t.writeStream(ctx, s, []byte{byte(class)}); err != nil {
		return fmt.Errorf("client: quic %v stream: %w", class, err)
	}
	t.live.Add(1)
	t.pumps.Go(func() { t.pump(s, limit) })
	return nil
}

func (t *quicTransport) pump(s *quic.Stream, limit int) {
	defer func() {
		if t.live.Add(-1) == 0 {
			t.endOnce.Do(func() { close(t.ended) })
		}
	}()
	for {
		b, err := wire.ReadFrame(s, limit)
		if err != nil {
			t.fail(quicError(err))
			return
		}
		select {
		case t.in <- b:
		case <-t.done:
			return
		}
	}
}

// fail records the first stream error and closes the connection so the
// other pumps end too.
func (t *quicTransport) fail(err error) {
	t.errOnce.Do(func() {
		t.err = err
		t.conn.CloseWithError(0, "")
	})
}

func (t *quicTransport) read(ctx context.Context) ([]byte, error) {
	select {
	case b := <-t.in:
		return b, nil
	case <-t.ended:
		// Every pump has exited: what they read has been handed over.
		return nil, t.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (t *quicTransport) write(ctx context.Context, class wire.Class, frame []byte) error {
	s := t.streams[class]
	if s == nil {
		return fmt.Errorf("client: quic %v stream not open", class)
	}
	return t.writeStream(ctx, s, wire.AppendLengthPrefixed(make([]byte, 0, 4+len(frame)), frame))
}

func (t *quicTransport) writeStream(ctx context.Context, s *quic.Stream, b []byte) error {
	dl, _ := ctx.Deadline() // zero: none
	s.SetWriteDeadline(dl)
	stop := context.AfterFunc(ctx, func() { s.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	_, err := s.Write(b)
	return quicError(err)
}

func (t *quicTransport) established(ctx context.Context, maxFrame int) error {
	for _, c := range []wire.Class{wire.ClassDurable, wire.ClassTelemetry, wire.ClassSignal} {
		if err := t.open(ctx, c, readLimit(maxFrame)); err != nil {
			return err
		}
	}
	return nil
}

func (t *quicTransport) close() {
	t.closeOnce.Do(func() {
		t.fail(errQUICClosed) // before done: a pump that sees done finds err set
		close(t.done)
		t.pumps.Wait()
		if t.udp != nil {
			t.udp.Close()
			t.udp.Conn.Close()
		}
	})
}

func (t *quicTransport) name() string { return "quic" }

// errQUICClosed is the read error after a local close.
var errQUICClosed = errors.New("client: quic connection closed")

// quicError maps a connection closed by the relay with an application error
// code that is a wire.Code to *Error, so a fatal error survives even if its
// ERROR frame was discarded with the connection.
func quicError(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode != 0 && ae.ErrorCode < 1<<16 {
		return &Error{Code: wire.Code(ae.ErrorCode), Message: ae.ErrorMessage, Fatal: true}
	}
	return err
}
