package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Subprotocol is the WebSocket subprotocol and QUIC ALPN of the protocol.
const Subprotocol = "stapes/1"

// transport is one connection to a relay. The session logic in conn.go is
// written once against it; ws.go and quic.go implement it.
//
// Concurrency: one goroutine calls read and one calls write; established is
// called once, between the handshake and starting them; close may be called
// from any goroutine, more than once, and unblocks read and write.
type transport interface {
	// read returns the next frame from the relay, from any stream.
	read(ctx context.Context) ([]byte, error)
	// write sends one frame on the stream of its class.
	write(ctx context.Context, class wire.Class, frame []byte) error
	// established is called after WELCOME with the relay's frame limit;
	// QUIC opens the class streams here.
	established(ctx context.Context, maxFrame int) error
	// close ends the connection and waits for goroutines it owns.
	close()
	// name is "ws" or "quic".
	name() string
}

// dialer holds what the network transports need to dial.
type dialer struct {
	tls  *tls.Config  // nil: system defaults
	http *http.Client // for WebSocket handshakes
	// listenPacket opens the UDP socket of one QUIC connection; nil: a
	// socket of quic-go's own (quic.DialAddr).
	listenPacket func(ctx context.Context) (net.PacketConn, error)
}

// newDialer builds a dialer. dialContext (nil: net.Dialer) opens the TCP
// connections of WebSocket handshakes.
func newDialer(tc *tls.Config, dialContext func(ctx context.Context, network, addr string) (net.Conn, error),
	listenPacket func(ctx context.Context) (net.PacketConn, error)) dialer {
	ht := &http.Transport{TLSClientConfig: tc, DialContext: dialContext}
	return dialer{tls: tc, http: &http.Client{Transport: ht}, listenPacket: listenPacket}
}

// dialFunc opens a transport to rawURL (already validated by parseURL).
type dialFunc func(ctx context.Context, d *dialer, rawURL string) (transport, error)

func dialNetwork(ctx context.Context, d *dialer, rawURL string) (transport, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "ws", "wss":
		return dialWS(ctx, d, u.String())
	case "quic":
		return dialQUIC(ctx, d, u.Host)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupportedURL, u.Scheme)
}

// readLimit is the largest frame accepted from a relay that accepts
// maxFrame: a DELIVER repeats a SEND of up to maxFrame bytes and adds seq,
// sender and role, so it may be slightly larger.
func readLimit(maxFrame int) int {
	const envelope = 4 << 10
	return max(maxFrame, wire.DefaultMaxFrame) + envelope
}

// transportOf names the transport a URL selects.
func transportOf(rawURL string) string {
	if u, err := parseURL(rawURL); err == nil && u.Scheme == "quic" {
		return "quic"
	}
	return "ws"
}
