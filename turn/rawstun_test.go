package turn

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// rawClient speaks TURN by hand (pion/stun/v4 messages) over one UDP or
// TCP connection, so a test controls the 5-tuple, the credentials of each
// request and the exact bytes of every peer address.
type rawClient struct {
	t     *testing.T
	conn  net.Conn
	tcp   bool
	nonce stun.Nonce
}

func dialRaw(t *testing.T, network, server string) *rawClient {
	t.Helper()
	c, err := net.Dial(network, server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, tcp: network != "udp4" && network != "udp"}
}

var errNoResponse = errors.New("no response")

// request sends method with creds (fetching a nonce first if it has none)
// and returns the response, or errNoResponse if none came within 2 s.
func (c *rawClient) request(method stun.Method, user, pass string, attrs ...stun.Setter) (*stun.Message, error) {
	for range 3 {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		if c.nonce != nil {
			setters = append(setters, stun.NewUsername(user), stun.NewRealm(DefaultRealm), c.nonce,
				stun.NewLongTermIntegrity(user, DefaultRealm, pass))
		}
		setters = append(setters, stun.Fingerprint)
		m, err := stun.Build(setters...)
		if err != nil {
			return nil, err
		}
		if err := c.send(m.Raw); err != nil {
			return nil, err
		}
		resp, err := c.readResponse(m.TransactionID, 2*time.Second)
		if err != nil {
			return nil, err
		}
		var code stun.ErrorCodeAttribute
		if resp.Type.Class == stun.ClassErrorResponse && code.GetFrom(resp) == nil &&
			(code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce) {
			var n stun.Nonce
			if n.GetFrom(resp) == nil && (c.nonce == nil || code.Code == stun.CodeStaleNonce) {
				c.nonce = n
				continue
			}
		}
		return resp, nil
	}
	return nil, errors.New("nonce dance did not settle")
}

func (c *rawClient) send(b []byte) error {
	_, err := c.conn.Write(b)
	return err
}

// readResponse returns the message with transaction id, skipping others.
func (c *rawClient) readResponse(id [stun.TransactionIDSize]byte, d time.Duration) (*stun.Message, error) {
	deadline := time.Now().Add(d)
	for {
		b, err := c.readFrame(deadline)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errNoResponse
			}
			return nil, err
		}
		if !stun.IsMessage(b) {
			continue
		}
		m := &stun.Message{Raw: b}
		if m.Decode() == nil && m.TransactionID == id {
			return m, nil
		}
	}
}

// readFrame reads one datagram, or one STUN/ChannelData frame over TCP.
func (c *rawClient) readFrame(deadline time.Time) ([]byte, error) {
	_ = c.conn.SetReadDeadline(deadline)
	if !c.tcp {
		b := make([]byte, 65536)
		n, err := c.conn.Read(b)
		return b[:n], err
	}
	h := make([]byte, 4)
	if _, err := io.ReadFull(c.conn, h); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[2:4]))
	if h[0]>>6 == 0 {
		n += 16
	} else {
		n = (n + 3) &^ 3
	}
	b := make([]byte, 4+n)
	copy(b, h)
	_, err := io.ReadFull(c.conn, b[4:])
	return b, err
}

// code returns the error code of a response, 0 for success.
func code(m *stun.Message) int {
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var e stun.ErrorCodeAttribute
	if e.GetFrom(m) != nil {
		return -1
	}
	return int(e.Code)
}

// allocate makes a UDP allocation with user's credentials and returns the
// relayed address.
func (c *rawClient) allocate(user, pass string) (netip.AddrPort, error) {
	resp, err := c.request(stun.MethodAllocate, user, pass, rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if code(resp) != 0 {
		return netip.AddrPort{}, &respError{code(resp)}
	}
	var ra stun.XORMappedAddress
	if err := ra.GetFromAs(resp, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, err
	}
	a, _ := netip.AddrFromSlice(ra.IP)
	return netip.AddrPortFrom(a.Unmap(), uint16(ra.Port)), nil
}

type respError struct{ code int }

func (e *respError) Error() string { return "TURN error response " + itoa(e.code) }

// sendIndication asks the server to relay data to peer (no response).
func (c *rawClient) sendIndication(peer peerAttr, data []byte) error {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), peer, rawAttr{stun.AttrData, data}, stun.Fingerprint)
	if err != nil {
		return err
	}
	return c.send(m.Raw)
}

// channelData sends a ChannelData message on channel num.
func (c *rawClient) channelData(num uint16, data []byte) error {
	n := len(data)
	if c.tcp {
		n = (n + 3) &^ 3
	}
	b := make([]byte, 4+n)
	binary.BigEndian.PutUint16(b[0:2], num)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(data)))
	copy(b[4:], data)
	return c.send(b)
}

// rawAttr adds an attribute with the given bytes.
type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (a rawAttr) AddTo(m *stun.Message) error { m.Add(a.t, a.v); return nil }

func channelNumber(n uint16) rawAttr {
	return rawAttr{stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}}
}

func lifetime(d time.Duration) rawAttr {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return rawAttr{stun.AttrLifetime, v}
}

// peerAttr is an XOR-PEER-ADDRESS carrying exactly the given address: an
// IPv6 one (even ::ffff:a.b.c.d) as family 0x02, an IPv4 one as 0x01 —
// unlike stun.XORMappedAddress, which writes any IPv4-mapped IP as IPv4.
type peerAttr netip.AddrPort

func (p peerAttr) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], magicCookie)
	copy(key[4:], m.TransactionID[:])
	ip := ap.Addr().AsSlice()
	family := byte(0x02)
	if ap.Addr().Is4() {
		family = 0x01
	}
	v := make([]byte, 4+len(ip))
	v[1] = family
	binary.BigEndian.PutUint16(v[2:4], ap.Port()^uint16(magicCookie>>16))
	for i := range ip {
		v[4+i] = ip[i] ^ key[i]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

const magicCookie = 0x2112A442
