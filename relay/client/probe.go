package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Candidate is a relay a client may connect to, as the relay map lists it.
type Candidate struct {
	ID     string // relay id, as the control plane names it
	Region string // informational
	URL    string // ws://, wss:// or quic://host:port: where it is probed
}

// Measurement is the outcome of probing one candidate.
type Measurement struct {
	Candidate Candidate
	// RTT is the median of Samples; 0 when Err is set.
	RTT time.Duration
	// Samples are the PING→PONG round trips, in the order measured.
	Samples []time.Duration
	// Connect is how long the transport handshake took (TCP+TLS+WebSocket
	// upgrade, or QUIC): 1–3 round trips plus the relay's CPU time, so it is
	// reported, not used.
	Connect time.Duration
	// Err says why the candidate could not be measured: unreachable, a
	// draining relay (ErrGoaway), one that does not answer probes
	// (ErrProbeUnsupported), the timeout.
	Err error
}

// Prober measures the round-trip time to relays: it connects to each
// candidate over the transport its URL names, sends PINGs before HELLO
// (protocol §9.4), one after another, and takes the median of the PONG
// times. Candidates are probed concurrently, one connection each; no token
// is needed and nothing is logged. The zero value uses the defaults.
type Prober struct {
	// Samples is the number of PINGs per candidate. Default 5, at most 32
	// (the relay answers no more before HELLO).
	Samples int
	// Timeout bounds the probe of one candidate, connection included.
	// Default 5 s.
	Timeout time.Duration
	// TLS, DialContext and ListenPacket are as in Config.
	TLS          *tls.Config
	DialContext  func(ctx context.Context, network, addr string) (net.Conn, error)
	ListenPacket func(ctx context.Context) (net.PacketConn, error)

	// Unit tests only: the transport dialer and the clock.
	dial dialFunc
	now  func() time.Time
}

// maxProbeSamples is the most PINGs a relay answers before HELLO.
const maxProbeSamples = 32

// Probe measures every candidate with a default Prober.
func Probe(ctx context.Context, candidates []Candidate) []Measurement {
	var p Prober
	return p.Probe(ctx, candidates)
}

// Probe measures every candidate concurrently and returns one Measurement
// per candidate, in the order given. It returns when all are done or ctx
// ends (the unfinished ones then carry ctx's error).
func (p *Prober) Probe(ctx context.Context, candidates []Candidate) []Measurement {
	samples := p.Samples
	if samples <= 0 {
		samples = 5
	}
	samples = min(samples, maxProbeSamples)
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	dial, now := p.dial, p.now
	if dial == nil {
		dial = dialNetwork
	}
	if now == nil {
		now = time.Now
	}
	d := newDialer(p.TLS, p.DialContext, p.ListenPacket)
	defer d.http.CloseIdleConnections()
	out := make([]Measurement, len(candidates))
	var wg sync.WaitGroup
	for i, c := range candidates {
		out[i].Candidate = c
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			m := &out[i]
			m.Err = probeOne(cctx, m, &d, dial, now, samples)
			if m.Err != nil {
				m.RTT = 0
			}
		})
	}
	wg.Wait()
	return out
}

// probeOne connects to m's candidate and fills in m's times.
func probeOne(ctx context.Context, m *Measurement, d *dialer, dial dialFunc, now func() time.Time, samples int) error {
	if _, err := parseURL(m.Candidate.URL); err != nil {
		return err
	}
	start := now()
	t, err := dial(ctx, d, m.Candidate.URL)
	if err != nil {
		return fmt.Errorf("client: probe %s: %w", m.Candidate.ID, err)
	}
	defer t.close()
	m.Connect = now().Sub(start)
	for n := range samples {
		nonce := uint64(n + 1)
		sent := now()
		if err := t.write(ctx, wire.ClassControl, wire.Encode(&wire.Frame{Type: wire.TypePing, Nonce: nonce})); err != nil {
			return fmt.Errorf("client: probe %s: %w", m.Candidate.ID, err)
		}
		if err := awaitPong(ctx, t, nonce); err != nil {
			return fmt.Errorf("client: probe %s: %w", m.Candidate.ID, err)
		}
		m.Samples = append(m.Samples, now().Sub(sent))
	}
	m.RTT = median(m.Samples)
	return nil
}

// awaitPong reads until the PONG of nonce; GOAWAY and ERROR end the probe.
func awaitPong(ctx context.Context, t transport, nonce uint64) error {
	for {
		b, err := t.read(ctx)
		if err != nil {
			if CodeOf(err) == wire.CodeProtocol {
				return fmt.Errorf("%w: %w", ErrProbeUnsupported, err)
			}
			return err
		}
		f, err := wire.Decode(b, 0)
		switch {
		case errors.Is(err, wire.ErrUnknownType):
			continue
		case err != nil:
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		switch f.Type {
		case wire.TypePong:
			if f.Nonce == nonce {
				return nil
			}
		case wire.TypeGoaway:
			return fmt.Errorf("%w: relay is %v", ErrGoaway, f.Code)
		case wire.TypeError:
			if f.Code == wire.CodeProtocol {
				return fmt.Errorf("%w: %w", ErrProbeUnsupported, errorFromFrame(&f))
			}
			return errorFromFrame(&f)
		}
	}
}

// median of ds (the mean of the middle two for an even count); 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
