package baseline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
)

// Modes of Serve.
var Modes = []string{"forward", "gorilla-echo", "coder-echo", "pion-turn", "udp-sink"}

// Serve runs a baseline server on loopback until ctx ends: "forward" is
// the WebSocket forwarder and echo over TLS on TCP plus the QUIC forwarder
// and echo on UDP, on the same port (tlsConf required); "gorilla-echo" and
// "coder-echo" are plain-HTTP WebSocket echo servers. ready is called with
// the address once it listens. "pion-turn" is ServeTURN, "udp-sink"
// ServeUDPSink.
func Serve(ctx context.Context, mode string, tlsConf *tls.Config, ready func(addr string)) error {
	if mode == "pion-turn" {
		return ServeTURN(ctx, ready)
	}
	if mode == "udp-sink" {
		return ServeUDPSink(ctx, ready)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("baseline: listen: %w", err)
	}
	defer tcp.Close()
	var h http.Handler
	var ql *quic.Listener
	switch mode {
	case "forward":
		if tlsConf == nil {
			return errors.New("baseline: forward needs a certificate")
		}
		udp, err := net.ListenPacket("udp", tcp.Addr().String())
		if err != nil {
			return fmt.Errorf("baseline: listen udp: %w", err)
		}
		defer udp.Close()
		qc := tlsConf.Clone()
		qc.NextProtos = []string{QUICProto}
		if ql, err = quic.Listen(udp, qc, &quic.Config{MaxIdleTimeout: 30 * time.Second}); err != nil {
			return fmt.Errorf("baseline: quic listen: %w", err)
		}
		defer ql.Close()
		tc := tlsConf.Clone()
		tc.NextProtos = []string{"http/1.1"}
		tcp = tls.NewListener(tcp, tc)
		h = NewWSForwarder()
	case "gorilla-echo":
		h = GorillaEcho()
	case "coder-echo":
		h = CoderEcho()
	default:
		return fmt.Errorf("baseline: unknown mode %q (want one of %v)", mode, Modes)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	var g errgroup.Group
	g.Go(func() error {
		if err := hs.Serve(tcp); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if ql != nil {
		f := NewQUICForwarder()
		g.Go(func() error {
			err := f.Serve(ctx, ql)
			if ctx.Err() != nil {
				return nil
			}
			return err
		})
	}
	ready(tcp.Addr().String())
	<-ctx.Done()
	hs.Close()
	if ql != nil {
		ql.Close()
	}
	return g.Wait()
}
