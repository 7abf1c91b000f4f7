package call

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Role is which side of the call a Call is.
type Role int

// Roles.
const (
	Caller Role = iota + 1 // sends the offer, decides the call's length
	Callee                 // answers the first offer, ends on the caller's bye
)

// Stream is one RTP stream's shape.
type Stream struct {
	Rate int // packets per second; negative: no such stream
	Size int // payload bytes per packet
}

// Config configures a Call.
type Config struct {
	Role Role
	// ICEServers are the TURN (and STUN) servers, with credentials.
	ICEServers []webrtc.ICEServer
	// AllowDirect lets ICE use host and server-reflexive candidates.
	// Default false: relay-only (ICETransportPolicyRelay), and Run fails
	// with ErrNotRelayed if the selected pair is not relay to relay.
	AllowDirect bool
	// Duration is how long the caller sends media. Default 10s. The
	// callee sends until the caller's bye.
	Duration time.Duration
	// Audio is the audio-sized stream. Default 50 packets/s of 160 bytes.
	Audio Stream
	// Video is the video-sized stream. Default 30 packets/s of 1200 bytes.
	Video Stream
	// PingInterval is how often each side pings over the data channel for
	// the RTT. Default 200ms.
	PingInterval time.Duration
	// Retry is how often an unanswered offer or bye is sent again.
	// Default 1s.
	Retry time.Duration
	// ConnectTimeout bounds the time from the offer (or, for the callee,
	// from the first offer received) to connected media. Default 30s.
	ConnectTimeout time.Duration
	// Settings, if set, adjusts pion's SettingEngine (tests on loopback:
	// SetIncludeLoopbackCandidate).
	Settings func(*webrtc.SettingEngine)
	// Logger, default discards. Never given SDP, candidates or addresses.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Role != Caller && cfg.Role != Callee {
		return cfg, fmt.Errorf("%w: role %d", ErrBadConfig, cfg.Role)
	}
	if len(cfg.ICEServers) == 0 && !cfg.AllowDirect {
		return cfg, fmt.Errorf("%w: relay-only needs ICE servers (TURN)", ErrBadConfig)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Audio == (Stream{}) {
		cfg.Audio = Stream{Rate: 50, Size: 160}
	}
	if cfg.Video == (Stream{}) {
		cfg.Video = Stream{Rate: 30, Size: 1200}
	}
	for _, s := range []Stream{cfg.Audio, cfg.Video} {
		if s.Rate > 1000 || (s.Rate > 0 && (s.Size < 12 || s.Size > 1400)) {
			return cfg, fmt.Errorf("%w: stream %d/s of %d bytes (at most 1000/s, 12..1400 bytes)", ErrBadConfig, s.Rate, s.Size)
		}
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 200 * time.Millisecond
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return cfg, nil
}

// SendFunc sends one signalling payload to the other participants as an
// ephemeral wire.KindSignal message (client.Client.Send with durable
// false). An error is not fatal: the call sends again what matters.
type SendFunc func(ctx context.Context, payload []byte) error

// Call is one call. Handle feeds it the session's signalling; Run runs it.
type Call struct {
	cfg  Config
	send SendFunc
	in   chan Signal

	dropped atomic.Uint64 // signals dropped: Handle's queue full
}

// New returns a call; nothing happens until Run.
func New(cfg Config, send SendFunc) (*Call, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if send == nil {
		return nil, fmt.Errorf("%w: no SendFunc", ErrBadConfig)
	}
	return &Call{cfg: cfg, send: send, in: make(chan Signal, 256)}, nil
}

// Handle takes the payload of a wire.KindSignal delivery. It never
// blocks: when Run is behind, the signal is dropped (and sent again by
// the other side if it mattered). Undecodable payloads are ignored.
func (c *Call) Handle(payload []byte) {
	s, err := DecodeSignal(payload)
	if err != nil {
		return
	}
	select {
	case c.in <- s:
	default:
		c.dropped.Add(1)
	}
}

// Stats is what a call measured, from one side.
type Stats struct {
	Call        string        // the call id
	ConnectTime time.Duration // offer sent (callee: received) to connected
	Relayed     bool          // the selected ICE pair is relay to relay
	Audio       TrackStats
	Video       TrackStats
	PingsSent   uint64          // data-channel pings sent
	PingsBack   uint64          // pongs received
	RTT         []time.Duration // data-channel ping round trips, in order
}

// TrackStats counts one stream in both directions.
type TrackStats struct {
	Sent     uint64 // packets this side sent
	Received uint64 // packets of the other side's stream received
	PeerSent uint64 // packets the other side says it sent (its bye); 0 if unknown
	Lost     uint64 // PeerSent - Received, or by sequence numbers without a bye
}

// RTTMedian returns the median round trip, 0 without any.
func (s Stats) RTTMedian() time.Duration { return quantile(s.RTT, 0.5) }

// RTTMax returns the largest round trip.
func (s Stats) RTTMax() time.Duration { return quantile(s.RTT, 1) }

// Run runs the call until it ends: the caller offers, sends media for
// Duration and hangs up; the callee waits for an offer (until ctx ends),
// answers, and sends media until the caller's bye.
func (c *Call) Run(ctx context.Context) (Stats, error) {
	r := &run{Call: c, id: rand.Text()[:16], streams: map[string]*stream{}}
	return r.run(ctx)
}

// run is the state of one Run.
type run struct {
	*Call
	id      string
	pc      *webrtc.PeerConnection
	dc      *webrtc.DataChannel
	streams map[string]*stream // "audio", "video"
	start   time.Time          // for ping timestamps
	failed  <-chan struct{}    // closed when ICE or DTLS fails for good
	wg      sync.WaitGroup     // media readers and writers

	mu       sync.Mutex // guards the fields below
	closed   bool
	rtts     []time.Duration
	pingsOut uint64
	pongs    uint64
}

func (r *run) newPeer() error {
	se := webrtc.SettingEngine{}
	if r.cfg.Settings != nil {
		r.cfg.Settings(&se)
	}
	// No interceptors: no NACK retransmissions or congestion control, so
	// what arrives is what TURN delivered.
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pol := webrtc.ICETransportPolicyRelay
	if r.cfg.AllowDirect {
		pol = webrtc.ICETransportPolicyAll
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: r.cfg.ICEServers, ICETransportPolicy: pol})
	if err != nil {
		return fmt.Errorf("call: peer connection: %w", err)
	}
	r.pc = pc
	for _, k := range []struct {
		name  string
		s     Stream
		codec webrtc.RTPCodecCapability
	}{
		{"audio", r.cfg.Audio, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}},
		{"video", r.cfg.Video, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}},
	} {
		st := &stream{name: k.name, shape: k.s}
		r.streams[k.name] = st
		if k.s.Rate <= 0 {
			continue
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(k.codec, k.name, "stapes-call")
		if err != nil {
			return fmt.Errorf("call: %s track: %w", k.name, err)
		}
		sender, err := pc.AddTrack(tr)
		if err != nil {
			return fmt.Errorf("call: %s track: %w", k.name, err)
		}
		st.track = tr
		r.goRead(func() { drainRTCP(sender) })
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		st := r.streams[tr.Kind().String()]
		if st == nil {
			return
		}
		// pion runs this in its own goroutine; count it so Run waits.
		if !r.enter() {
			return
		}
		defer r.wg.Done()
		st.receive(tr)
	})
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		r.signal(context.Background(), Signal{Type: TypeCandidate, Call: r.id, Candidate: &init})
	})
	return nil
}

// enter counts a pion callback goroutine into wg unless the run is over.
func (r *run) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

func (r *run) goRead(f func()) {
	if !r.enter() {
		return
	}
	go func() { defer r.wg.Done(); f() }()
}

// close closes the peer connection and waits for every goroutine.
func (r *run) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	if r.pc != nil {
		r.pc.Close()
	}
	r.wg.Wait()
}

// signal sends s; failures are logged at debug (the retry covers them).
func (r *run) signal(ctx context.Context, s Signal) {
	b, err := s.Encode()
	if err == nil {
		err = r.send(ctx, b)
	}
	if err != nil {
		r.cfg.Logger.Debug("call: signal not sent", "type", s.Type, "err", err)
	}
}

func (r *run) run(ctx context.Context) (Stats, error) {
	defer r.close()
	r.start = time.Now()
	if err := r.newPeer(); err != nil {
		return Stats{}, err
	}
	connected, failed := make(chan struct{}), make(chan struct{})
	var once, failOnce sync.Once
	r.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed:
			failOnce.Do(func() { close(failed) })
		}
	})
	r.failed = failed
	dcOpen := make(chan *webrtc.DataChannel, 1)
	if r.cfg.Role == Caller {
		dc, err := r.pc.CreateDataChannel("stapes-call", nil)
		if err != nil {
			return Stats{}, fmt.Errorf("call: data channel: %w", err)
		}
		dc.OnOpen(func() { dcOpen <- dc })
		r.setupDC(dc)
	} else {
		r.pc.OnDataChannel(func(dc *webrtc.DataChannel) {
			r.setupDC(dc)
			dc.OnOpen(func() {
				select {
				case dcOpen <- dc:
				default:
				}
			})
		})
	}
	var began time.Time
	var err error
	if r.cfg.Role == Caller {
		began, err = r.offer(ctx, connected)
	} else {
		began, err = r.answer(ctx, connected)
	}
	if err != nil {
		return r.stats(time.Duration(0)), err
	}
	connectTime := time.Since(began)
	st := r.stats(connectTime)
	if !r.cfg.AllowDirect && !st.Relayed {
		return st, ErrNotRelayed
	}
	select {
	case r.dc = <-dcOpen:
	case <-ctx.Done():
		return st, ctx.Err()
	case <-time.After(r.cfg.ConnectTimeout):
		return st, fmt.Errorf("%w: data channel did not open", ErrNotConnected)
	}
	r.cfg.Logger.Info("call connected", "call", r.id[:8], "connect", connectTime)
	peerSent, err := r.media(ctx)
	for name, n := range peerSent {
		if s := r.streams[name]; s != nil {
			s.peerSent.Store(n)
		}
	}
	r.settle(peerSent)
	return r.stats(connectTime), err
}

// offer sends the offer until an answer arrives and waits for the media
// to connect.
func (r *run) offer(ctx context.Context, connected <-chan struct{}) (time.Time, error) {
	o, err := r.pc.CreateOffer(nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("call: offer: %w", err)
	}
	if err := r.pc.SetLocalDescription(o); err != nil {
		return time.Time{}, fmt.Errorf("call: offer: %w", err)
	}
	began := time.Now()
	deadline := time.NewTimer(r.cfg.ConnectTimeout)
	defer deadline.Stop()
	retry := time.NewTicker(r.cfg.Retry)
	defer retry.Stop()
	r.signal(ctx, Signal{Type: TypeOffer, Call: r.id, SDP: r.pc.LocalDescription().SDP})
	answered := false
	var early []webrtc.ICECandidateInit // candidates before the answer
	for {
		select {
		case <-ctx.Done():
			return began, ctx.Err()
		case <-deadline.C:
			if !answered {
				return began, ErrNoAnswer
			}
			return began, ErrNotConnected
		case <-connected:
			return began, nil
		case <-retry.C:
			// Again until connected, not only until answered: each
			// repeat is answered with every candidate the callee has,
			// so a lost candidate message costs a second, not the call.
			r.signal(ctx, Signal{Type: TypeOffer, Call: r.id, SDP: r.pc.LocalDescription().SDP})
		case s := <-r.in:
			if s.Call != r.id {
				continue
			}
			switch s.Type {
			case TypeAnswer:
				if !answered {
					if err := r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP}); err != nil {
						return began, fmt.Errorf("call: answer: %w", err)
					}
					answered = true
					for _, c := range early {
						_ = r.pc.AddICECandidate(c)
					}
				} else {
					r.addSDPCandidates(s.SDP)
				}
			case TypeCandidate:
				if answered {
					_ = r.pc.AddICECandidate(*s.Candidate)
				} else if len(early) < 64 {
					early = append(early, *s.Candidate)
				}
			case TypeBye:
				return began, fmt.Errorf("%w: callee hung up", ErrNoAnswer)
			}
		}
	}
}

// answer waits for an offer, answers it (again for each repeat) and
// waits for the media to connect.
func (r *run) answer(ctx context.Context, connected <-chan struct{}) (time.Time, error) {
	var began time.Time
	var deadline <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return began, ctx.Err()
		case <-deadline:
			return began, ErrNotConnected
		case <-connected:
			return began, nil
		case s := <-r.in:
			switch {
			case s.Type == TypeOffer && began.IsZero():
				began = time.Now()
				r.id = s.Call
				t := time.NewTimer(r.cfg.ConnectTimeout)
				defer t.Stop()
				deadline = t.C
				if err := r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.SDP}); err != nil {
					return began, fmt.Errorf("call: offer: %w", err)
				}
				a, err := r.pc.CreateAnswer(nil)
				if err != nil {
					return began, fmt.Errorf("call: answer: %w", err)
				}
				if err := r.pc.SetLocalDescription(a); err != nil {
					return began, fmt.Errorf("call: answer: %w", err)
				}
				r.signal(ctx, Signal{Type: TypeAnswer, Call: r.id, SDP: r.pc.LocalDescription().SDP})
			case began.IsZero() || s.Call != r.id:
				// Not ours (or a candidate before any offer).
			case s.Type == TypeOffer: // a repeat: our answer was lost, or it has new candidates
				r.addSDPCandidates(s.SDP)
				r.signal(ctx, Signal{Type: TypeAnswer, Call: r.id, SDP: r.pc.LocalDescription().SDP})
			case s.Type == TypeCandidate:
				_ = r.pc.AddICECandidate(*s.Candidate)
			case s.Type == TypeBye:
				return began, fmt.Errorf("%w: caller hung up", ErrNotConnected)
			}
		}
	}
}

// addSDPCandidates adds the candidates of a repeated offer or answer:
// trickled ones may have been dropped on the way.
func (r *run) addSDPCandidates(sdp string) {
	if r.pc.RemoteDescription() == nil {
		return
	}
	mid, idx := "0", uint16(0)
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "a=mid:") && mid == "0" {
			mid = strings.TrimPrefix(line, "a=mid:")
		}
		if strings.HasPrefix(line, "a=candidate:") {
			_ = r.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a="), SDPMid: &mid, SDPMLineIndex: &idx})
		}
	}
}

// media sends RTP and pings until the call ends and returns what the
// other side says it sent.
func (r *run) media(ctx context.Context) (map[string]uint64, error) {
	mctx, stop := context.WithCancel(ctx)
	var senders sync.WaitGroup
	for _, st := range r.streams {
		if st.track == nil {
			continue
		}
		senders.Go(func() { st.send(mctx) })
	}
	senders.Go(func() { r.ping(mctx) })
	halt := func() map[string]uint64 {
		stop()
		senders.Wait()
		sent := map[string]uint64{}
		for name, st := range r.streams {
			sent[name] = st.sent.Load()
		}
		return sent
	}
	retry := time.NewTicker(r.cfg.Retry)
	defer retry.Stop()
	var end <-chan time.Time
	if r.cfg.Role == Caller {
		t := time.NewTimer(r.cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	var mine map[string]uint64
	var byeWait <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			halt()
			return nil, ctx.Err()
		case <-end: // caller: hang up, then wait for the callee's bye
			end = nil
			mine = halt()
			r.signal(ctx, Signal{Type: TypeBye, Call: r.id, Sent: mine})
			t := time.NewTimer(5 * r.cfg.Retry)
			defer t.Stop()
			byeWait = t.C
		case <-byeWait: // no bye back: loss by sequence numbers
			return nil, nil
		case <-r.failed: // the other side is gone without a bye
			r.failed = nil
			if mine == nil {
				halt()
			}
			return nil, fmt.Errorf("%w: connection failed during the call", ErrNotConnected)
		case <-retry.C:
			if mine != nil && r.cfg.Role == Caller {
				r.signal(ctx, Signal{Type: TypeBye, Call: r.id, Sent: mine})
			}
		case s := <-r.in:
			if s.Call != r.id || s.Type != TypeBye {
				continue
			}
			if mine == nil {
				mine = halt()
			}
			if r.cfg.Role == Callee {
				r.signal(ctx, Signal{Type: TypeBye, Call: r.id, Sent: mine})
			}
			return s.Sent, nil
		}
	}
}

// settle waits a little for packets still in flight, until every stream
// has received what the peer says it sent.
func (r *run) settle(peerSent map[string]uint64) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		done := true
		for name, n := range peerSent {
			if st := r.streams[name]; st != nil && st.received.Load() < n {
				done = false
			}
		}
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *run) stats(connect time.Duration) Stats {
	s := Stats{Call: r.id, ConnectTime: connect}
	if r.pc != nil && r.pc.SCTP() != nil {
		if p, err := r.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && p != nil {
			s.Relayed = p.Local.Typ == webrtc.ICECandidateTypeRelay && p.Remote.Typ == webrtc.ICECandidateTypeRelay
		}
	}
	if st := r.streams["audio"]; st != nil {
		s.Audio = st.stats()
	}
	if st := r.streams["video"]; st != nil {
		s.Video = st.stats()
	}
	r.mu.Lock()
	s.PingsSent, s.PingsBack, s.RTT = r.pingsOut, r.pongs, append([]time.Duration(nil), r.rtts...)
	r.mu.Unlock()
	return s
}
