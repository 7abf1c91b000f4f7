//go:build !(linux && (amd64 || arm64))

package turn

import (
	"net"
	"net/netip"
)

// batchReader is recvmmsg batching, on 64-bit Linux only; elsewhere the
// UDP listeners read one datagram per call.
type batchReader struct{}

func newBatchReader(*net.UDPConn, func([]byte, netip.AddrPort) bool, func()) *batchReader { return nil }

func (*batchReader) serve() ([]byte, netip.AddrPort, error) { panic("unreachable") }
