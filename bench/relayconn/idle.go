package relayconn

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// DialIdle opens a plain (ws://) WebSocket to addr at path with the
// fewest resources the harness can spend on it — no goroutine, no buffers
// kept — sends first as one binary message and reads one message back
// (WELCOME from a relay, the echo from an echo server). The connection is
// then left idle; the caller closes it. local, when not nil, is the source
// address (spreading many connections over 127.0.0.x source addresses).
func DialIdle(ctx context.Context, addr, path, subprotocol string, local net.IP, first []byte) (net.Conn, []byte, error) {
	d := net.Dialer{}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("relayconn: idle dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	reply, err := handshake(nc, addr, path, subprotocol, first)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	return nc, reply, nil
}

func handshake(nc net.Conn, addr, path, subprotocol string, first []byte) ([]byte, error) {
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n"
	if subprotocol != "" {
		req += "Sec-WebSocket-Protocol: " + subprotocol + "\r\n"
	}
	req += "\r\n"
	// The first message goes only after the 101: gorilla/websocket refuses
	// a client that sends before the handshake is complete.
	if _, err := nc.Write([]byte(req)); err != nil {
		return nil, fmt.Errorf("relayconn: idle handshake: %w", err)
	}
	br := bufio.NewReaderSize(nc, 1024)
	status, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("relayconn: idle handshake: %w", err)
	}
	if !strings.Contains(status, " 101 ") {
		return nil, fmt.Errorf("relayconn: idle handshake: %s", strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("relayconn: idle handshake: %w", err)
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := nc.Write(maskedFrame(first)); err != nil {
		return nil, fmt.Errorf("relayconn: idle send: %w", err)
	}
	return readMessage(br)
}

// maskedFrame is one final binary frame, masked as a client must.
func maskedFrame(p []byte) []byte {
	b := []byte{0x82}
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, c := range p {
		b = append(b, c^mask[i%4])
	}
	return b
}

// readMessage reads one unmasked server frame (no fragmentation support:
// the servers measured send small single-frame messages).
func readMessage(br *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("relayconn: idle read: %w", err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("relayconn: idle read: message of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return nil, fmt.Errorf("relayconn: idle read: %w", err)
	}
	if op := h[0] & 0x0f; op == 0x8 {
		return nil, fmt.Errorf("relayconn: idle read: closed by server")
	}
	return p, nil
}
