// Package relaytest starts real relays for tests: a Pebble store in a
// temporary directory, dev signing keys, a self-signed certificate, and
// WebSocket (TCP) plus QUIC (UDP) on the same loopback port.
package relaytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/quic-go/quic-go"

	"github.com/stapes-relay/stapes/internal/freeport"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// Options configures Start. Zero values are fine.
type Options struct {
	// Dir is the Pebble directory. Default: a new t.TempDir().
	Dir string
	// Configure, if set, adjusts the relay config before New.
	Configure func(*relay.Config)
	// Logger, default: discards below warnings (set STAPES_TEST_LOG=1 for all).
	Logger *slog.Logger
	// FS is the Pebble filesystem (default: the real disk); with a
	// crashable in-memory FS a test can restart the relay on a crash
	// clone of it (RestartFS).
	FS vfs.FS
}

// Relay is a running in-process relay.
type Relay struct {
	Server  *relay.Server
	Store   *storage.Store
	Dir     string
	Addr    string // 127.0.0.1:port, TCP and UDP
	WSURL   string // wss://127.0.0.1:port/v1/connect
	QUICURL string // quic://127.0.0.1:port
	Signer  *token.Signer
	Keyring *token.Keyring

	// PeerAddr is the relay-to-relay listener (UDP), when the config has
	// a Cluster.
	PeerAddr string

	opts     Options
	cert     tls.Certificate
	resetKey quic.StatelessResetKey
	tcp      net.Listener
	udp      net.PacketConn
	pudp     net.PacketConn
	pdone    chan error
	done     chan error
	mu       sync.Mutex
	alive    bool
}

// Start starts a relay and stops it when the test ends.
func Start(t testing.TB, o Options) *Relay {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Logger == nil {
		level := slog.LevelWarn
		if os.Getenv("STAPES_TEST_LOG") != "" {
			level = slog.LevelDebug
		}
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner("test-key", priv)
	if err != nil {
		t.Fatal(err)
	}
	kr := token.NewKeyring()
	if err := kr.Add("test-key", signer.Public()); err != nil {
		t.Fatal(err)
	}
	cert, err := relay.SelfSigned("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Dir: o.Dir, Signer: signer, Keyring: kr, opts: o, cert: cert}
	_, _ = rand.Read(r.resetKey[:])
	if err := r.start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func (r *Relay) start(addr string) error {
	st, err := storage.Open(r.Dir, storage.Options{Logger: r.opts.Logger, FS: r.opts.FS})
	if err != nil {
		return err
	}
	// One stateless reset key for the relay's life, as relayd keeps one
	// in its data directory: a restarted relay resets its former
	// process's QUIC connections, so clients reconnect at once instead of
	// at their idle timeout.
	cfg := relay.Config{Store: st, Auth: r.Keyring, Logger: r.opts.Logger, RelayID: "test", QUICResetKey: &r.resetKey}
	if r.opts.Configure != nil {
		r.opts.Configure(&cfg)
	}
	srv, err := relay.New(cfg)
	if err != nil {
		st.Close()
		return err
	}
	tcp, udp, err := ListenPair(addr)
	if err != nil {
		srv.Close()
		st.Close()
		return err
	}
	r.Server, r.Store, r.tcp, r.udp = srv, st, tcp, udp
	r.Addr = tcp.Addr().String()
	r.WSURL = "wss://" + r.Addr + relay.WSPath
	r.QUICURL = "quic://" + r.Addr
	r.done = make(chan error, 1)
	tc := &tls.Config{Certificates: []tls.Certificate{r.cert}, MinVersion: tls.VersionTLS13}
	go func() { r.done <- srv.Serve(tcp, udp, tc) }()
	r.pdone = nil
	if cfg.Cluster != nil {
		var pudp net.PacketConn
		if r.PeerAddr == "" {
			pudp, err = freeport.UDP("127.0.0.1")
		} else {
			pudp, err = net.ListenPacket("udp", r.PeerAddr)
		}
		if err != nil {
			srv.Close()
			<-r.done
			tcp.Close()
			udp.Close()
			st.Close()
			return err
		}
		r.pudp, r.PeerAddr = pudp, pudp.LocalAddr().String()
		r.pdone = make(chan error, 1)
		go func() { r.pdone <- srv.ServePeers(pudp, tc) }()
	}
	r.alive = true
	return nil
}

// Peer describes the relay for a Cluster.
func (r *Relay) Peer(id, region string) relay.Peer {
	return relay.Peer{ID: id, Region: region, Addr: r.PeerAddr, URL: r.QUICURL}
}

// Cluster is a membership list tests change at will.
type Cluster struct {
	mu    sync.Mutex
	peers map[string]relay.Peer
}

// Peers implements relay.Cluster.
func (c *Cluster) Peers() []relay.Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]relay.Peer, 0, len(c.peers))
	for _, p := range c.peers {
		out = append(out, p)
	}
	return out
}

// Set adds or updates a member.
func (c *Cluster) Set(p relay.Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peers == nil {
		c.peers = map[string]relay.Peer{}
	}
	c.peers[p.ID] = p
}

// Remove drops a member (as if the membership layer declared it dead).
func (c *Cluster) Remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.peers, id)
}

// ListenPair listens on TCP and UDP with the same port number. With port 0
// the port is one below the kernel's ephemeral range (package freeport),
// so that nothing else takes it while a restartable relay is down.
func ListenPair(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	if port == "0" {
		return freeport.Pair(host)
	}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	udp, err := net.ListenPacket("udp", tcp.Addr().String())
	if err != nil {
		tcp.Close()
		return nil, nil, fmt.Errorf("relaytest: UDP beside TCP %s: %w", addr, err)
	}
	return tcp, udp, nil
}

// ClientTLS returns a TLS config that trusts this relay's certificate.
func (r *Relay) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(r.cert.Leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

// TrustAll returns a client TLS config that trusts every given relay's
// certificate (clients that move between relays).
func TrustAll(rs ...*Relay) *tls.Config {
	pool := x509.NewCertPool()
	for _, r := range rs {
		pool.AddCert(r.cert.Leaf)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

// Token signs claims with the relay's test key, filling Expiry (1 h),
// IssuedAt and ID when unset.
func (r *Relay) Token(t testing.TB, c token.Claims) []byte {
	t.Helper()
	now := time.Now()
	if c.Expiry == 0 {
		c.Expiry = now.Add(time.Hour).Unix()
	}
	if c.IssuedAt == 0 {
		c.IssuedAt = now.Unix()
	}
	if c.ID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.ID = hex.EncodeToString(b[:])
	}
	if c.Tenant == "" {
		c.Tenant = "t1"
	}
	tok, err := r.Signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Stop closes the relay (as a clean shutdown) but keeps its directory.
func (r *Relay) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.alive {
		return
	}
	r.alive = false
	r.Server.Close()
	<-r.done
	if r.pdone != nil {
		<-r.pdone
		r.pudp.Close()
	}
	r.tcp.Close()
	r.udp.Close()
	r.Store.Close()
}

// Restart stops the relay and starts it again on the same port and
// directory.
func (r *Relay) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	for i := 0; i < 50; i++ {
		if err = r.start(r.Addr); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // the port may take a moment to free up
	}
	t.Fatalf("relaytest: restart: %v", err)
}

// RestartFS stops the relay and starts it again on fs, for instance a
// crash clone of the filesystem it ran on: a restart after a crash.
func (r *Relay) RestartFS(t testing.TB, fs vfs.FS) {
	t.Helper()
	r.Stop()
	r.mu.Lock()
	r.opts.FS = fs
	r.mu.Unlock()
	r.Restart(t)
}

// Close stops the relay.
func (r *Relay) Close() { r.Stop() }

// WaitHead waits until the session's committed head reaches want.
func (r *Relay) WaitHead(t testing.TB, session string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := r.Store.Head(context.Background(), session)
		if err != nil {
			t.Fatal(err)
		}
		if h >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relaytest: session head %d, want %d", h, want)
		}
		time.Sleep(5 * time.Millisecond) // polling the store
	}
}
