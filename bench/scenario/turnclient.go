package scenario

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// turnLoadClient is the turn scenario's TURN client: control messages by
// hand (pion/stun/v4), data as raw ChannelData written to a connected UDP
// socket — the same bytes for every server, no client library in the way.
type turnLoadClient struct {
	conn        *net.UDPConn
	user, pass  string
	realm       string
	nonce       stun.Nonce
	relay       netip.AddrPort
	frame       []byte // ChannelData header + payload, reused
	buf         []byte
	transaction time.Duration
}

func dialTURNLoad(ctx context.Context, server, user, pass, realm string, payload int) (*turnLoadClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", server)
	if err != nil {
		return nil, err
	}
	return &turnLoadClient{conn: c.(*net.UDPConn), user: user, pass: pass, realm: realm,
		frame: make([]byte, 4+payload), buf: make([]byte, 2048), transaction: 2 * time.Second}, nil
}

// Close deletes the allocation (Refresh with LIFETIME 0, best effort)
// and closes the socket. Without the delete the server keeps the
// allocation for its lifetime, and a later client that the kernel gives
// the same local port gets 437 (allocation mismatch) — as happened
// between repeats.
func (c *turnLoadClient) Close() {
	if c.relay.IsValid() {
		c.transaction = 300 * time.Millisecond
		_, _ = c.request(stun.MethodRefresh, rawSTUNAttr{stun.AttrLifetime, []byte{0, 0, 0, 0}})
	}
	c.conn.Close()
}

// request sends a request (after fetching a nonce if needed) and returns
// the response; an error response is an error.
func (c *turnLoadClient) request(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for range 3 {
		setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		if c.nonce != nil {
			setters = append(setters, stun.NewUsername(c.user), stun.NewRealm(c.realm), c.nonce,
				stun.NewLongTermIntegrity(c.user, c.realm, c.pass))
		}
		setters = append(setters, stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(m)
		if err != nil {
			return nil, err
		}
		if resp.Type.Class == stun.ClassSuccessResponse {
			return resp, nil
		}
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(resp)
		var n stun.Nonce
		if (code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce) && n.GetFrom(resp) == nil &&
			(c.nonce == nil || code.Code == stun.CodeStaleNonce) {
			var r stun.Realm
			if r.GetFrom(resp) == nil {
				c.realm = r.String()
			}
			c.nonce = n
			continue
		}
		return nil, fmt.Errorf("turn %v: error %d", method, code.Code)
	}
	return nil, errors.New("turn: nonce dance did not settle")
}

// roundTrip sends m and waits for its response, retransmitting twice.
func (c *turnLoadClient) roundTrip(m *stun.Message) (*stun.Message, error) {
	for try := range 3 {
		if _, err := c.conn.Write(m.Raw); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(c.transaction * time.Duration(try+1) / 3)
		for {
			_ = c.conn.SetReadDeadline(deadline)
			n, err := c.conn.Read(c.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, err
			}
			resp := &stun.Message{Raw: append([]byte(nil), c.buf[:n]...)}
			if stun.IsMessage(resp.Raw) && resp.Decode() == nil && resp.TransactionID == m.TransactionID {
				return resp, nil
			}
		}
	}
	return nil, errors.New("turn: no response")
}

// allocate makes a UDP allocation and binds channel 0x4000 to peer.
func (c *turnLoadClient) allocate(peer netip.AddrPort) error {
	resp, err := c.request(stun.MethodAllocate, rawSTUNAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}})
	if err != nil {
		return err
	}
	var ra stun.XORMappedAddress
	if err := ra.GetFromAs(resp, stun.AttrXORRelayedAddress); err != nil {
		return err
	}
	a, _ := netip.AddrFromSlice(ra.IP)
	c.relay = netip.AddrPortFrom(a.Unmap(), uint16(ra.Port))
	var x stun.XORMappedAddress
	x.IP, x.Port = peer.Addr().AsSlice(), int(peer.Port())
	peerAttr := xorPeer{x}
	if _, err := c.request(stun.MethodChannelBind, rawSTUNAttr{stun.AttrChannelNumber, []byte{0x40, 0x00, 0, 0}}, peerAttr); err != nil {
		return err
	}
	binary.BigEndian.PutUint16(c.frame[0:2], 0x4000)
	binary.BigEndian.PutUint16(c.frame[2:4], uint16(len(c.frame)-4))
	return nil
}

// send writes one ChannelData packet (no allocation).
func (c *turnLoadClient) send() error {
	_, err := c.conn.Write(c.frame)
	return err
}

type rawSTUNAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawSTUNAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

type xorPeer struct{ a stun.XORMappedAddress }

func (p xorPeer) AddTo(m *stun.Message) error { return p.a.AddToAs(m, stun.AttrXORPeerAddress) }
