package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sync/errgroup"
)

// QUICConfig is the QUIC configuration relays use: 0-RTT allowed, a few
// bidirectional streams per connection (control plus one per class),
// keepalives below typical NAT timeouts.
func QUICConfig() *quic.Config {
	return &quic.Config{
		MaxIncomingStreams:    8,
		MaxIncomingUniStreams: -1,
		MaxIdleTimeout:        45 * time.Second,
		KeepAlivePeriod:       15 * time.Second,
		Allow0RTT:             true,
	}
}

// Serve serves WebSocket on tcp (HTTPS when tlsConf is set, plain HTTP for
// local development otherwise) and, when udp is not nil, QUIC on udp (TLS
// required). mux, when not nil, receives every other HTTP path. Serve
// returns when the server is closed; the caller owns tcp and udp.
func (s *Server) Serve(tcp net.Listener, udp net.PacketConn, tlsConf *tls.Config, mux http.Handler) error {
	if udp != nil && tlsConf == nil {
		return fmt.Errorf("%w: QUIC needs TLS", ErrConfig)
	}
	h := http.NewServeMux()
	h.Handle(WSPath, s.Handler())
	if mux != nil {
		h.Handle("/", mux)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	var g errgroup.Group
	if tlsConf != nil {
		tc := tlsConf.Clone()
		tc.NextProtos = []string{"http/1.1"}
		tcp = tls.NewListener(tcp, tc)
	}
	g.Go(func() error {
		if err := hs.Serve(tcp); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("relay: websocket listener: %w", err)
		}
		return nil
	})
	var ql *quic.EarlyListener
	if udp != nil {
		qc := tlsConf.Clone()
		qc.NextProtos = []string{Subprotocol}
		var err error
		ql, err = quic.ListenEarly(udp, qc, QUICConfig())
		if err != nil {
			hs.Close()
			return fmt.Errorf("relay: quic listener: %w", err)
		}
		g.Go(func() error {
			if err := s.ServeQUIC(ql); !errors.Is(err, ErrClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-s.ctx.Done()
		hs.Close()
		if ql != nil {
			ql.Close()
		}
		return nil
	})
	return g.Wait()
}
