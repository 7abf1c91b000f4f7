package turn

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	pturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/internal/selfsigned"
	"go.uber.org/goleak"
)

// labCert is the TLS listener's certificate, trusted by the process.
var labCert tls.Certificate

func TestMain(m *testing.M) {
	var err error
	if labCert, err = selfsigned.New("localhost", "127.0.0.1"); err != nil {
		panic(err)
	}
	cleanup, err := trustCert(labCert.Certificate[0])
	if err != nil {
		panic(err)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { cleanup() }))
}

var labSecret = []byte("lab-secret-0123456789abcdef")

// testServer is a Server on loopback with UDP (two SO_REUSEPORT sockets),
// TCP and TLS listeners.
type testServer struct {
	*Server
	udp, tcp, tls string // listener addresses
	creds         *Credentials
	reg           *prometheus.Registry
	ended         sync.Map
}

// newServer starts a server; mod edits the config (lab allow list for
// 127.0.0.0/8 by default; loopback tests remove it).
func newServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{reg: prometheus.NewRegistry()}
	ts.creds = &Credentials{Secrets: [][]byte{labSecret}, Ended: func(s string) bool { _, ok := ts.ended.Load(s); return ok }}
	pcs, err := ListenUDP(context.Background(), "udp4", "127.0.0.1:0", 2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig(ts.creds)
	cfg.PacketConns = pcs
	cfg.TCPListeners = []net.Listener{tl}
	cfg.TLSListeners = []net.Listener{sl}
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{labCert}, MinVersion: tls.VersionTLS12}
	cfg.Registerer = ts.reg
	cfg.Labels = prometheus.Labels{"relay": "test", "region": "lab"}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		for _, pc := range pcs {
			pc.Close()
		}
		tl.Close()
		sl.Close()
		t.Fatal(err)
	}
	ts.Server = s
	ts.udp, ts.tcp, ts.tls = pcs[0].LocalAddr().String(), tl.Addr().String(), sl.Addr().String()
	t.Cleanup(func() { s.Close() })
	return ts
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// mint returns a credential for session valid for ttl.
func (ts *testServer) mint(t *testing.T, session string, ttl time.Duration) (string, string) {
	t.Helper()
	u, p, _, err := ts.creds.Mint(session, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return u, p
}

// turnClient is a pion/turn client over UDP on loopback.
func turnClient(t *testing.T, server, user, pass string) *pturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: DefaultRealm,
		LoggerFactory: nopLoggers{}, RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// allocate allocates with c or fails the test.
func allocate(t *testing.T, c *pturn.Client) net.PacketConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	return relay
}

// udpPeer is a plain UDP socket on loopback standing for a peer.
func udpPeer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readWithin reads one datagram from c within d.
func readWithin(c net.PacketConn, d time.Duration) ([]byte, net.Addr, error) {
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFrom(buf)
	return buf[:n], from, err
}

// silent asserts c receives nothing for d.
func silent(t *testing.T, c net.PacketConn, d time.Duration) {
	t.Helper()
	b, from, err := readWithin(c, d)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("listener got %d bytes from %v (err %v), want silence", len(b), from, err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counter reads a metric's value (summing matching series) from the registry.
func (ts *testServer) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func itoa(i int) string { return strconv.Itoa(i) }

// trustCert makes cert the system's trust roots for this test process
// (pion/webrtc verifies a turns: server and has no option to skip it).
// It must run before anything loads the system roots.
func trustCert(der []byte) (cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "stapes-turn-ca")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	os.Setenv("SSL_CERT_FILE", path)
	os.Setenv("SSL_CERT_DIR", dir)
	return func() { os.RemoveAll(dir) }, nil
}
