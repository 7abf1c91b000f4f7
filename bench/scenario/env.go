package scenario

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/token"
)

// Env is what every scenario shares in one harness run: a scratch
// directory, a signing key with its keyring file, a self-signed
// certificate (used by relayd and by the baselines, so the TLS work is the
// same), and the processes it started.
type Env struct {
	// Dir is the scratch directory: data directories, logs, keys.
	Dir string
	// Relayd is the relayd binary.
	Relayd string
	// Self is the stapes binary; baselines run as `Self bench _serve MODE`.
	Self string
	// Progress shows progress and notes (never nil after NewEnv).
	Progress *bench.Progress
	// StartRelay starts a relay; the default runs Relayd as a subprocess.
	// Tests replace it with an in-process relay.
	StartRelay func(ctx context.Context, r RelaySpec) (Target, error)

	CertFile, KeyFile string
	cert              tls.Certificate
	signer            *token.Signer
	keyring           string
	seq               atomic.Uint64

	mu    sync.Mutex // guards stops
	stops []func()
}

// RelaySpec describes a relay to start.
type RelaySpec struct {
	Name  string        // for its data directory and log
	Delay time.Duration // --debug-commit-delay
	Plain bool          // plain WebSocket, no TLS and no QUIC (--plain)
}

// Target is a running relay.
type Target interface {
	Addr() string        // host:port, TCP and UDP
	Procs() []bench.Proc // processes to sample as "server"
	Close()
}

// NewEnv creates the keys and certificate in dir.
func NewEnv(dir, relayd, self string, progress *bench.Progress) (*Env, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Relayd: relayd, Self: self, Progress: progress}
	if e.Progress == nil {
		e.Progress = bench.NewProgress(nopWriter{}, false, time.Second)
	}
	e.StartRelay = e.startRelayd
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	kid := token.KeyIDFor(priv.Public().(ed25519.PublicKey))
	if e.signer, err = token.NewSigner(kid, priv); err != nil {
		return nil, err
	}
	e.keyring = filepath.Join(dir, "keyring.json")
	if err := token.WriteKeyringFile(e.keyring, map[string]ed25519.PublicKey{kid: e.signer.Public()}); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("scenario: keyring: %w", err)
	}
	if e.cert, err = relay.SelfSigned("127.0.0.1", "localhost"); err != nil {
		return nil, err
	}
	e.CertFile, e.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(e.cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(e.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.cert.Certificate[0]}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(e.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// Certificate is the shared server certificate.
func (e *Env) Certificate() tls.Certificate { return e.cert }

// Keyring is the path of the token keyring file.
func (e *Env) Keyring() string { return e.keyring }

// ClientTLS returns a client config trusting the certificate. A new
// config has no session cache: every handshake is a full one.
func (e *Env) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.cert.Leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
}

// ServerTLS returns a server config with the certificate.
func (e *Env) ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{e.cert}, MinVersion: tls.VersionTLS13}
}

// Session returns a new unique session id with prefix.
func (e *Env) Session(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, e.seq.Add(1))
}

// Token signs a token for subject in session with role, valid for an hour.
func (e *Env) Token(session, subject, role string) ([]byte, error) {
	return e.sign(token.Claims{Subject: subject, Role: role, Session: session})
}

// DeviceToken is Token for a session fitting a hearing aid (serial device,
// model model), which config commands need.
func (e *Env) DeviceToken(session, subject, role, device, model string) ([]byte, error) {
	return e.sign(token.Claims{Subject: subject, Role: role, Session: session, Device: device, Model: model})
}

// sign fills c's tenant, times and id, and signs it.
func (e *Env) sign(c token.Claims) ([]byte, error) {
	now := time.Now()
	var id [8]byte
	_, _ = rand.Read(id[:])
	c.Tenant = "bench"
	c.Expiry, c.IssuedAt, c.ID = now.Add(time.Hour).Unix(), now.Unix(), hex.EncodeToString(id[:])
	return e.signer.Sign(c)
}

// track remembers how to stop a process so Close stops it.
func (e *Env) track(stop func()) {
	e.mu.Lock()
	e.stops = append(e.stops, stop)
	e.mu.Unlock()
}

// Close stops (kills by pid) every process the environment started. Stops
// are idempotent, so a scenario may have stopped some already.
func (e *Env) Close() {
	e.mu.Lock()
	stops := e.stops
	e.stops = nil
	e.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// logFile opens a log for a process in the scratch directory.
func (e *Env) logFile(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(e.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// relaydProc is a relayd subprocess.
type relaydProc struct {
	p   *bench.Process
	log *os.File
}

func (r *relaydProc) Addr() string        { return r.p.Addr }
func (r *relaydProc) Procs() []bench.Proc { return []bench.Proc{{Name: "server", Pid: r.p.Pid}} }
func (r *relaydProc) Close() {
	r.p.Stop()
	r.log.Close()
}

// startRelayd runs relayd on loopback ports with a fresh data directory.
func (e *Env) startRelayd(ctx context.Context, spec RelaySpec) (Target, error) {
	data := filepath.Join(e.Dir, "data-"+e.Session(spec.Name))
	log, err := e.logFile("relayd-" + spec.Name)
	if err != nil {
		return nil, err
	}
	args := e.relaydArgs("127.0.0.1:0", data, "bench")
	if spec.Plain {
		args = append(args, "--plain")
	} else {
		args = append(args, "--tls-cert", e.CertFile, "--tls-key", e.KeyFile)
	}
	if spec.Delay > 0 {
		args = append(args, "--debug-commit-delay", spec.Delay.String())
	}
	p, err := bench.StartProcess(ctx, bench.Command{Name: "relayd", Path: e.Relayd, Args: args, Log: log, Ready: relaydReady})
	if err != nil {
		log.Close()
		return nil, err
	}
	r := &relaydProc{p: p, log: log}
	e.track(r.Close)
	return r, nil
}

// relaydArgs are the flags every relayd of the harness starts with: the
// client listener, a loopback ops port, the data directory, the keyring
// and the relay id.
func (e *Env) relaydArgs(listen, data, id string) []string {
	// The load generator opens connections far faster than relayd's
	// default admission rate (a production guard against reconnect storms);
	// the scenarios measure relaying, so the guard is lifted.
	return []string{"--listen", listen, "--ops", "127.0.0.1:0", "--data", data, "--keyring", e.keyring,
		"--relay-id", id, "--log-level", "info", "--accept-rate", "1000000", "--max-conns", "1000000"}
}

// relaydReady finds the WebSocket address in relayd's "relayd ready" log
// line (JSON).
func relaydReady(line string) (string, bool) {
	ws, _, ok := readyAddrs(line)
	return ws, ok
}

// readyAddrs reads the WebSocket and ops addresses from relayd's "relayd
// ready" log line (JSON).
func readyAddrs(line string) (ws, ops string, ok bool) {
	if !strings.Contains(line, "relayd ready") {
		return "", "", false
	}
	var v struct {
		WS  string `json:"ws"`
		Ops string `json:"ops"`
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil || v.WS == "" {
		return "", "", false
	}
	return v.WS, v.Ops, true
}

// StartBaseline runs `stapes bench _serve MODE` and returns it once it
// printed its address.
func (e *Env) StartBaseline(ctx context.Context, mode string) (*bench.Process, error) {
	log, err := e.logFile("baseline-" + mode)
	if err != nil {
		return nil, err
	}
	p, err := bench.StartProcess(ctx, bench.Command{
		Name: "server", Path: e.Self,
		Args: []string{"bench", "_serve", mode, "--cert", e.CertFile, "--key", e.KeyFile},
		Log:  log,
		Ready: func(line string) (string, bool) {
			addr, ok := strings.CutPrefix(line, "listening ")
			return strings.TrimSpace(addr), ok
		},
	})
	if err != nil {
		log.Close()
		return nil, err
	}
	e.track(func() {
		p.Stop()
		log.Close()
	})
	return p, nil
}

// loopbackIP returns 127.0.0.(2+i%n): source addresses for many
// connections.
func loopbackIP(i, n int) net.IP {
	return net.IPv4(127, 0, 0, byte(2+i%n))
}
