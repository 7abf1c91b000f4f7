package baseline

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
)

// ServeUDPSink runs the single-socket Go packet sink (issue 7's per-core
// reference for UDP forwarding): one UDP socket on loopback read by one
// goroutine with the allocation-free ReadFromUDPAddrPort, counting
// datagrams and dropping them. A 1-byte datagram "?" is answered with the
// count so far (8 bytes, big-endian) and is not counted. ready gets the
// address.
func ServeUDPSink(ctx context.Context, ready func(addr string)) error {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("baseline: udp sink listen: %w", err)
	}
	_ = pc.SetReadBuffer(8 << 20) // what stapes asks for, at least
	var count atomic.Uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		reply := make([]byte, 8)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				continue
			}
			if n == 1 && buf[0] == '?' {
				binary.BigEndian.PutUint64(reply, count.Load())
				_, _ = pc.WriteToUDPAddrPort(reply, from)
				continue
			}
			count.Add(1)
		}
	}()
	ready(pc.LocalAddr().String())
	<-ctx.Done()
	err = pc.Close()
	<-done
	return err
}
