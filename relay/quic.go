package relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/stapes-relay/stapes/relay/wire"
)

// QUICListener is what ServeQUIC accepts from: *quic.Listener or
// *quic.EarlyListener (0-RTT).
type QUICListener interface {
	Accept(ctx context.Context) (*quic.Conn, error)
}

// ServeQUIC accepts QUIC connections (ALPN Subprotocol) from ln until ln
// or the server is closed. The caller owns ln.
func (s *Server) ServeQUIC(ln QUICListener) error {
	for {
		qc, err := ln.Accept(s.ctx)
		if err != nil {
			if s.closed.Load() {
				return ErrClosed
			}
			return err
		}
		if !s.admitConn() {
			qc.CloseWithError(quic.ApplicationErrorCode(wire.CodeOverloaded), wire.CodeOverloaded.String())
			continue
		}
		if !s.spawn(func() { s.serveQUICConn(qc) }) {
			qc.CloseWithError(quic.ApplicationErrorCode(wire.CodeDraining), "relay closed")
			return ErrClosed
		}
	}
}

// serveQUICConn runs one QUIC connection: a control stream first, then one
// stream per class, each with its own reader and writer so a stalled
// telemetry stream never holds up a config command.
func (s *Server) serveQUICConn(qc *quic.Conn) {
	c := s.newConn("quic", false)
	if !s.track(c) {
		qc.CloseWithError(quic.ApplicationErrorCode(wire.CodeDraining), "relay closed")
		return
	}
	defer s.untrack(c)
	var wg sync.WaitGroup
	closeCode := wire.Code(0)
	var closeMu sync.Mutex
	setClose := func(code wire.Code) {
		closeMu.Lock()
		if closeCode == 0 {
			closeCode = code
		}
		closeMu.Unlock()
	}
	defer func() {
		c.cancel()
		closeMu.Lock()
		code := closeCode
		closeMu.Unlock()
		qc.CloseWithError(quic.ApplicationErrorCode(code), code.String())
		wg.Wait()
	}()

	hctx, cancel := context.WithTimeout(c.ctx, s.cfg.HelloTimeout)
	st, class, err := acceptClassStream(hctx, qc)
	cancel()
	if err != nil {
		setClose(wire.CodeTimeout)
		return
	}
	if class != wire.ClassControl {
		setClose(wire.CodeProtocol)
		return
	}
	s.runStream(c, qc, &wg, st, []wire.Class{wire.ClassControl}, true, setClose)
	var opened [wire.NumClasses]bool
	opened[wire.ClassControl] = true
	for {
		st, class, err := acceptClassStream(c.ctx, qc)
		if errors.Is(err, errNoClass) {
			continue // that stream is reset; the connection goes on
		}
		if err != nil {
			return
		}
		switch {
		case !c.admitted.Load():
			c.fail(fatalf(wire.CodeProtocol, "stream opened before WELCOME"))
		case int(class) >= wire.NumClasses || opened[class]:
			c.fail(fatalf(wire.CodeProtocol, "bad or repeated stream class %d", class))
		default:
			opened[class] = true
			s.runStream(c, qc, &wg, st, []wire.Class{class}, false, setClose)
			continue
		}
		st.CancelRead(quic.StreamErrorCode(wire.CodeProtocol))
		st.CancelWrite(quic.StreamErrorCode(wire.CodeProtocol))
	}
}

// runStream starts the reader and writer of one class stream. When the
// control writer ends after a fatal ERROR, the connection is closed
// once the peer had a moment to read it.
func (s *Server) runStream(c *conn, qc *quic.Conn, wg *sync.WaitGroup, st *quic.Stream, classes []wire.Class, control bool, setClose func(wire.Code)) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := c.writeLoop(c.ctx, classes, func(ctx context.Context, b []byte) error {
			return wire.WriteFrame(st, b)
		})
		if control {
			if errors.Is(err, errConnDone) {
				setClose(lastErrorCode(c))
				// QUIC discards unsent stream data on CONNECTION_CLOSE, so
				// give the peer a moment to read the ERROR and hang up; the
				// close code carries the error code as well.
				st.Close()
				t := time.NewTimer(time.Second)
				select {
				case <-t.C:
				case <-qc.Context().Done():
				case <-s.ctx.Done():
				}
				t.Stop()
			}
			c.cancel()
		}
	}()
	go func() {
		defer wg.Done()
		br := bufio.NewReaderSize(st, 4096)
		for {
			b, err := wire.ReadFrame(br, s.cfg.MaxFrame)
			if err != nil {
				if !c.badFrame(err) && control {
					c.cancel() // control stream gone: the connection is over
				}
				return
			}
			if err := c.handleFrame(c.ctx, b); err != nil {
				c.cancel()
				return
			}
		}
	}()
}

// badFrame fails c when err, from wire.ReadFrame, is the peer's fault (a
// frame too large, or empty) and reports whether it was; other errors end
// the stream.
func (c *conn) badFrame(err error) bool {
	code := wire.CodeTooLarge
	switch {
	case errors.Is(err, wire.ErrEmpty):
		code = wire.CodeMalformed
	case !errors.Is(err, wire.ErrTooLarge):
		return false
	}
	c.fail(&protoError{code: code, msg: err.Error(), fatal: true})
	return true
}

// lastErrorCode is the code of the fatal ERROR a connection ended with.
func lastErrorCode(c *conn) wire.Code {
	c.fatalMu.Lock()
	defer c.fatalMu.Unlock()
	return c.fatalCode
}

var errNoClass = errors.New("relay: stream sent no class byte")

// acceptClassStream accepts the next client stream and reads its class byte.
func acceptClassStream(ctx context.Context, qc *quic.Conn) (*quic.Stream, wire.Class, error) {
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		return nil, 0, err
	}
	var b [1]byte
	if dl, ok := ctx.Deadline(); ok {
		st.SetReadDeadline(dl)
	} else {
		st.SetReadDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := io.ReadFull(st, b[:]); err != nil {
		st.CancelRead(quic.StreamErrorCode(wire.CodeTimeout))
		st.CancelWrite(quic.StreamErrorCode(wire.CodeTimeout))
		return st, 0, errNoClass
	}
	st.SetReadDeadline(time.Time{})
	return st, wire.Class(b[0]), nil
}
