package control_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/lab"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// Delays of the placement lab, one way. The clinician (eu-1) sits behind a
// slow last mile to its region's relay (eu-0), so the us relay is nearly as
// close to it; the patient (us-1) is near the us relay (us-0).
//
//	clinician → eu relay 2×35 = 70 ms, us relay 2×40 = 80 ms, ap relay 2×120 = 240 ms
//	patient   → eu relay 2×40 = 80 ms, us relay 2×10 = 20 ms, ap relay 2×90  = 180 ms
//	sum          eu 150 ms,            us 100 ms,             ap 420 ms
//
// Each client's nearest is its own region's relay; the session belongs on
// the us relay (not the clinician's nearest).
var placementLinks = []lab.Link{
	{A: "eu", B: "us", Delay: 40 * time.Millisecond},
	{A: "us", B: "ap", Delay: 90 * time.Millisecond},
	{A: "eu", B: "ap", Delay: 120 * time.Millisecond},
	{A: "eu", B: "eu", Delay: 35 * time.Millisecond},
	{A: "us", B: "us", Delay: 10 * time.Millisecond},
}

// labRelay is an in-process relay listening inside a lab host.
type labRelay struct {
	id, region, host string
	srv              *relay.Server
	ws, quic         string
	cert             *x509.Certificate
}

func startLabRelay(t *testing.T, l *lab.Lab, id, region, host string, kr *token.Keyring) *labRelay {
	t.Helper()
	ip := l.Addr(host).String()
	tcp, err := l.Listen(host, "tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := l.ListenPacket(host, "udp", tcp.Addr().String())
	if err != nil {
		tcp.Close()
		t.Fatal(err)
	}
	st, err := storage.Open(t.TempDir(), storage.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relay.New(relay.Config{Store: st, Auth: kr, Logger: quiet(), RelayID: id})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := relay.SelfSigned(ip)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(tcp, udp, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		tcp.Close()
		udp.Close()
		st.Close()
	})
	addr := tcp.Addr().String()
	return &labRelay{id: id, region: region, host: host, srv: srv, ws: "wss://" + addr + relay.WSPath, quic: "quic://" + addr, cert: cert.Leaf}
}

// labSide is one participant's device: its lab host and its relay choice.
type labSide struct {
	name, host, transport string
	prober                *client.Prober
	sel                   *client.Selector
	last                  []client.Measurement
}

func (s *labSide) probe(t *testing.T, cands []client.Candidate) client.Choice {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.last = s.prober.Probe(ctx, cands)
	ch, err := s.sel.Update(s.last)
	if err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	line := s.name + " (" + s.transport + "):"
	for _, m := range s.last {
		if m.Err != nil {
			t.Fatalf("%s could not measure %s: %v", s.name, m.Candidate.ID, m.Err)
		}
		line += fmt.Sprintf(" %s %.1f ms (samples %s);", m.Candidate.ID, ms(m.RTT), samples(m.Samples))
	}
	t.Logf("%s → %s", line, ch.Reason)
	return ch
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func samples(ds []time.Duration) string {
	out := ""
	for i, d := range ds {
		if i > 0 {
			out += " "
		}
		out += strconv.FormatFloat(ms(d), 'f', 1, 64)
	}
	return out
}

// TestPlacementInLab (issue 6, acceptance 4): three regions with delays
// between network namespaces, a relay in each, controld. The clinician
// (eu) and the patient (us) probe the relays of the public map — over QUIC
// and WebSocket — and each picks its own region's relay; the patient's
// app reports its RTTs, the clinician sends its own with the session
// request, and the session is placed on the relay with the smallest
// clinician+patient sum (us, not the clinician's nearest); both connect
// there through the lab and exchange a message. Then the clinician's
// last mile gets 8 ms slower, which makes the us relay slightly faster for
// it: it stays (hysteresis); 60 ms slower makes it switch after the
// Selector's two confirming rounds.
func TestPlacementInLab(t *testing.T) {
	if err := lab.Available(); err != nil {
		t.Skipf("placement lab needs network namespaces: %v", err)
	}
	start := time.Now()
	ctx := context.Background()
	l, err := lab.New(ctx, lab.Spec{
		Regions: []lab.Region{{Name: "eu", Hosts: 2}, {Name: "us", Hosts: 2}, {Name: "ap"}},
		Links:   placementLinks,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() }) // last: after the relays and clients in it
	t.Logf("lab %s up with the %v delayer", l.ID(), l.Delayer())

	s := newControlStackOnly(t)
	relays := []*labRelay{}
	for _, r := range []struct{ id, region, host string }{{"relay-a", "eu", "eu-0"}, {"us-r", "us", "us-0"}, {"ap-r", "ap", "ap-0"}} {
		cred := s.cred
		if r.id != "relay-a" { // SeedClinic made relay-a in eu
			var node struct {
				Credential string `json:"credential"`
			}
			s.api.Call(201, "POST", "/v1/operator/relays", operator, map[string]any{"id": r.id, "region": r.region, "capacity": 100}, &node)
			cred = node.Credential
		}
		kr := token.NewKeyring()
		lr := startLabRelay(t, l, r.id, r.region, r.host, kr)
		dir, err := control.NewDirectory(control.DirectoryConfig{URL: s.hs.URL, Credential: cred, Keyring: kr,
			Addresses: map[string]string{"ws": lr.ws, "quic": lr.quic}, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []func(context.Context) error{dir.Register, dir.Heartbeat, dir.RefreshKeys} {
			if err := step(ctx); err != nil {
				t.Fatal(err)
			}
		}
		relays = append(relays, lr)
	}
	roots := x509.NewCertPool()
	for _, r := range relays {
		roots.AddCert(r.cert)
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}

	// The public relay map, as an app reads it.
	m, err := client.FetchMap(ctx, s.hs.Client(), s.hs.URL+"/v1/map")
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // the Selectors' clock; only this goroutine moves it
	side := func(name, host, transport string) *labSide {
		sel, err := client.NewSelector(client.SelectorConfig{Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		return &labSide{name: name, host: host, transport: transport, sel: sel, prober: &client.Prober{TLS: tc,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return l.DialContext(ctx, host, network, addr)
			},
			ListenPacket: func(context.Context) (net.PacketConn, error) { return l.ListenPacket(host, "udp", ":0") },
		}}
	}
	clin, pat := side("clinician", "eu-1", "quic"), side("patient", "us-1", "ws")
	round := func() (client.Choice, client.Choice) {
		t.Helper()
		clock = clock.Add(2 * time.Minute) // beyond the Selector's hold-down: only margin and confirmation count
		return clin.probe(t, m.Candidates(clin.transport)), pat.probe(t, m.Candidates(pat.transport))
	}

	// 1. Each client picks its own region's relay.
	cc, pc := round()
	if cc.Candidate.ID != "relay-a" || pc.Candidate.ID != "us-r" {
		t.Fatalf("nearest: clinician %s, patient %s; want relay-a (eu) and us-r (us)", cc.Candidate.ID, pc.Candidate.ID)
	}

	// 2. The patient's app reports its RTTs (with the token of the session
	// it is in); the clinician sends its own with the next session.
	login := s.api.Login()
	var first struct {
		PatientToken string `json:"patient_token"`
	}
	s.api.Call(201, "POST", "/v1/sessions", login, map[string]any{"patient_id": "p1"}, &first)
	s.api.Call(200, "PUT", "/v1/placement/rtts", first.PatientToken, map[string]any{"rtts": client.RTTMillis(pat.last)}, nil)
	var sess struct {
		SessionID      string `json:"session_id"`
		ClinicianToken string `json:"clinician_token"`
		PatientToken   string `json:"patient_token"`
		Relay          struct {
			ID      string `json:"id"`
			WSURL   string `json:"ws_url"`
			QUICURL string `json:"quic_url"`
		} `json:"relay"`
		Placement struct {
			By     string  `json:"by"`
			Region string  `json:"region"`
			PathMS float64 `json:"path_ms"`
		} `json:"placement"`
	}
	s.api.Call(201, "POST", "/v1/sessions", login, map[string]any{"patient_id": "p1", "rtts": client.RTTMillis(clin.last)}, &sess)
	// The smallest sum of what the two sides measured:
	cr, pr := client.RTTMillis(clin.last), client.RTTMillis(pat.last)
	want, best := "", 0.0
	for id, c := range cr {
		if sum := c + pr[id]; want == "" || sum < best {
			want, best = id, sum
		}
	}
	t.Logf("placed on %s (%s) by %s, path %.1f ms; sums: relay-a %.1f, us-r %.1f, ap-r %.1f ms",
		sess.Relay.ID, sess.Placement.Region, sess.Placement.By, sess.Placement.PathMS,
		cr["relay-a"]+pr["relay-a"], cr["us-r"]+pr["us-r"], cr["ap-r"]+pr["ap-r"])
	if sess.Relay.ID != "us-r" || want != "us-r" || sess.Placement.By != "path" {
		t.Fatalf("session placed on %s by %s, smallest measured sum on %s; want us-r by path", sess.Relay.ID, sess.Placement.By, want)
	}

	// Both sides connect to the session's relay through the lab and talk.
	connect := func(sd *labSide, tok, url string) *client.Client {
		t.Helper()
		c, err := client.New(client.Config{URLs: []string{url}, TLS: tc, DialContext: sd.prober.DialContext, ListenPacket: sd.prober.ListenPacket,
			Token: func(context.Context) ([]byte, error) { return []byte(tok), nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.WaitConnected(wctx); err != nil {
			t.Fatalf("%s connecting to %s: %v", sd.name, url, err)
		}
		return c
	}
	cl := connect(clin, sess.ClinicianToken, sess.Relay.QUICURL)
	pa := connect(pat, sess.PatientToken, sess.Relay.WSURL)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sent, err := cl.Send(sctx, wire.KindChat, []byte("hello from eu"), true)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-pa.Deliveries():
		if string(d.Payload) != "hello from eu" {
			t.Fatalf("patient got %q", d.Payload)
		}
	case <-sctx.Done():
		t.Fatal("the patient did not receive the clinician's message")
	}
	if _, err := sent.Wait(sctx, wire.StageReceived); err != nil {
		t.Fatalf("no received receipt: %v", err)
	}

	// 3. The clinician's last mile gets 8 ms slower: the us relay (80 ms)
	// is now slightly faster than its eu relay (86 ms) — within the margin.
	if err := l.SetDelay("eu", "eu", 43*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		cc, pc := round()
		if cc.Switched || cc.Candidate.ID != "relay-a" || pc.Switched || pc.Candidate.ID != "us-r" {
			t.Fatalf("small change, round %d: clinician %s (%s), patient %s; want no switch", i+1, cc.Candidate.ID, cc.Reason, pc.Candidate.ID)
		}
	}

	// 4. 60 ms slower: the clinician moves to the us relay once two rounds
	// agree; the patient stays.
	if err := l.SetDelay("eu", "eu", 95*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cc, pc = round()
	if cc.Switched || pc.Switched {
		t.Fatalf("large change, first round: switched already (%s / %s); want a confirming round first", cc.Reason, pc.Reason)
	}
	cc, pc = round()
	if !cc.Switched || cc.Candidate.ID != "us-r" || pc.Switched {
		t.Fatalf("large change, second round: clinician %s switched=%v (%s), patient switched=%v; want the clinician on us-r",
			cc.Candidate.ID, cc.Switched, cc.Reason, pc.Switched)
	}
	t.Logf("acceptance 4 done in %v", time.Since(start).Round(time.Millisecond))
}

// newControlStackOnly is controld over its own Postgres with the clinic
// seeded (relay-a's credential in cred), without the loopback relay.
func newControlStackOnly(t *testing.T) *controlStack {
	s := newControlStack(t)
	s.relay.Stop()
	return s
}
