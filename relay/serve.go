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

// Serve serves WebSocket on tcp (TLS when tlsConf is set, plain for local
// development otherwise) and, when udp is not nil, QUIC on udp (TLS
// required). WebSocket uses the polled adapter (ServeWS) where the platform
// has epoll, else the coder/websocket Handler. Serve returns when the
// server is closed; the caller owns tcp and udp.
func (s *Server) Serve(tcp net.Listener, udp net.PacketConn, tlsConf *tls.Config) error {
	if udp != nil && tlsConf == nil {
		return fmt.Errorf("%w: QUIC needs TLS", ErrConfig)
	}
	var g errgroup.Group
	var stop []func()
	if _, err := s.poller(); err == nil {
		var wsTLS *tls.Config
		if tlsConf != nil {
			wsTLS = tlsConf.Clone()
			wsTLS.NextProtos = []string{"http/1.1"}
		}
		g.Go(func() error {
			if err := s.ServeWS(tcp, wsTLS); !errors.Is(err, ErrClosed) {
				return fmt.Errorf("relay: websocket listener: %w", err)
			}
			return nil
		})
		stop = append(stop, func() { tcp.Close() })
	} else {
		h := http.NewServeMux()
		h.Handle(WSPath, s.Handler())
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		ln := tcp
		if tlsConf != nil {
			tc := tlsConf.Clone()
			tc.NextProtos = []string{"http/1.1"}
			ln = tls.NewListener(tcp, tc)
		}
		g.Go(func() error {
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("relay: websocket listener: %w", err)
			}
			return nil
		})
		stop = append(stop, func() { hs.Close() })
	}
	if udp != nil {
		qc := tlsConf.Clone()
		qc.NextProtos = []string{Subprotocol}
		tr := &quic.Transport{Conn: udp, StatelessResetKey: s.cfg.QUICResetKey}
		ql, err := tr.ListenEarly(qc, QUICConfig())
		if err != nil {
			for _, f := range stop {
				f()
			}
			g.Wait()
			return fmt.Errorf("relay: quic listener: %w", err)
		}
		g.Go(func() error {
			if err := s.ServeQUIC(ql); !errors.Is(err, ErrClosed) {
				return err
			}
			return nil
		})
		stop = append(stop, func() { ql.Close(); tr.Close() })
	}
	g.Go(func() error {
		<-s.ctx.Done()
		for _, f := range stop {
			f()
		}
		return nil
	})
	return g.Wait()
}
