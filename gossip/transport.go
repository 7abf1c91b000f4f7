package gossip

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// traffic counts gossip bytes as they cross the transport: after
// encryption, compression and the cluster label, before IP and UDP/TCP
// headers (add 28 bytes per UDP packet for IPv4 on the wire).
type traffic struct {
	udpSent, udpRecv       atomic.Uint64
	udpPktSent, udpPktRecv atomic.Uint64
	tcpSent, tcpRecv       atomic.Uint64
}

// countingTransport wraps memberlist's NetTransport to count traffic. Two
// goroutines forward received packets and accepted streams; Shutdown stops
// the inner transport and then waits for them.
type countingTransport struct {
	inner   *memberlist.NetTransport
	t       *traffic
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

func newCountingTransport(inner *memberlist.NetTransport, t *traffic) *countingTransport {
	ct := &countingTransport{
		inner:   inner,
		t:       t,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	ct.wg.Add(2)
	go ct.forwardPackets()
	go ct.forwardStreams()
	return ct
}

func (ct *countingTransport) forwardPackets() {
	defer ct.wg.Done()
	in := ct.inner.PacketCh()
	for {
		select {
		case p := <-in:
			ct.t.udpRecv.Add(uint64(len(p.Buf)))
			ct.t.udpPktRecv.Add(1)
			select {
			case ct.packets <- p:
			case <-ct.done:
				return
			}
		case <-ct.done:
			return
		}
	}
}

func (ct *countingTransport) forwardStreams() {
	defer ct.wg.Done()
	in := ct.inner.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case ct.streams <- &countingConn{Conn: c, t: ct.t}:
			case <-ct.done:
				_ = c.Close()
				return
			}
		case <-ct.done:
			return
		}
	}
}

func (ct *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return ct.inner.FinalAdvertiseAddr(ip, port)
}

func (ct *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return ct.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (ct *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	at, err := ct.inner.WriteToAddress(b, a)
	if err == nil {
		ct.t.udpSent.Add(uint64(len(b)))
		ct.t.udpPktSent.Add(1)
	}
	return at, err
}

func (ct *countingTransport) PacketCh() <-chan *memberlist.Packet { return ct.packets }

func (ct *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return ct.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (ct *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := ct.inner.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, t: ct.t}, nil
}

func (ct *countingTransport) StreamCh() <-chan net.Conn { return ct.streams }

// Shutdown stops the listeners, then the forwarders. memberlist keeps
// reading PacketCh and StreamCh until this returns, so a forwarder blocked
// on a send is released either way.
func (ct *countingTransport) Shutdown() error {
	var err error
	ct.once.Do(func() {
		err = ct.inner.Shutdown()
		close(ct.done)
		ct.wg.Wait()
	})
	return err
}

// countingConn counts the bytes of one gossip TCP stream.
type countingConn struct {
	net.Conn
	t *traffic
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.tcpRecv.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.t.tcpSent.Add(uint64(n))
	return n, err
}
