package call

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// stream is one RTP stream: our track (nil when we send none) and what
// arrives of the other side's stream of the same kind.
type stream struct {
	name  string
	shape Stream
	track *webrtc.TrackLocalStaticRTP

	sent     atomic.Uint64
	received atomic.Uint64
	peerSent atomic.Uint64

	mu            sync.Mutex // guards the fields below (one reader, and stats)
	first, latest uint64     // extended sequence numbers received
	began         bool
}

// send writes Rate packets/s of Size bytes until ctx ends.
func (s *stream) send(ctx context.Context) {
	payload := make([]byte, s.shape.Size)
	_, _ = rand.Read(payload)
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true}, Payload: payload}
	tick := time.NewTicker(time.Second / time.Duration(s.shape.Rate))
	defer tick.Stop()
	step := uint32(90000 / s.shape.Rate)
	if s.name == "audio" {
		step = uint32(48000 / s.shape.Rate)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := s.track.WriteRTP(pkt); err == nil {
			s.sent.Add(1)
		}
		pkt.SequenceNumber++
		pkt.Timestamp += step
	}
}

// receive counts the packets of tr until it ends.
func (s *stream) receive(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if _, err := h.Unmarshal(buf[:n]); err != nil {
			continue
		}
		s.received.Add(1)
		s.mu.Lock()
		if !s.began {
			s.began, s.first, s.latest = true, uint64(h.SequenceNumber), uint64(h.SequenceNumber)
		} else {
			// Extend the 16-bit sequence number next to the latest one.
			cur := s.latest&^0xffff | uint64(h.SequenceNumber)
			switch {
			case cur+0x8000 < s.latest:
				cur += 0x10000
			case cur > s.latest+0x8000 && cur >= 0x10000:
				cur -= 0x10000
			}
			if cur > s.latest {
				s.latest = cur
			}
		}
		s.mu.Unlock()
	}
}

func (s *stream) stats() TrackStats {
	t := TrackStats{Sent: s.sent.Load(), Received: s.received.Load(), PeerSent: s.peerSent.Load()}
	if t.PeerSent > 0 {
		if t.PeerSent > t.Received {
			t.Lost = t.PeerSent - t.Received
		}
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.began {
		if expected := s.latest - s.first + 1; expected > t.Received {
			t.Lost = expected - t.Received
		}
	}
	return t
}

// drainRTCP reads a sender's RTCP until the connection closes (pion
// needs someone to read it).
func drainRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// Data-channel ping messages: a type byte and the sender's clock.
const (
	msgPing = 'p'
	msgPong = 'o'
)

func (r *run) setupDC(dc *webrtc.DataChannel) {
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if len(m.Data) != 9 {
			return
		}
		switch m.Data[0] {
		case msgPing:
			pong := slices.Clone(m.Data)
			pong[0] = msgPong
			_ = dc.Send(pong)
		case msgPong:
			sent := time.Duration(binary.BigEndian.Uint64(m.Data[1:]))
			rtt := time.Since(r.start) - sent
			r.mu.Lock()
			r.pongs++
			if len(r.rtts) < 100000 {
				r.rtts = append(r.rtts, rtt)
			}
			r.mu.Unlock()
		}
	})
}

// ping pings over the data channel every PingInterval until ctx ends.
func (r *run) ping(ctx context.Context) {
	t := time.NewTicker(r.cfg.PingInterval)
	defer t.Stop()
	msg := make([]byte, 9)
	msg[0] = msgPing
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		binary.BigEndian.PutUint64(msg[1:], uint64(time.Since(r.start)))
		if err := r.dc.Send(msg); err == nil {
			r.mu.Lock()
			r.pingsOut++
			r.mu.Unlock()
		}
	}
}

// quantile returns the q-quantile (0..1) of ds, 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}
