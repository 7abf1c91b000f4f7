package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/quic-go/quic-go"
	"github.com/stapes-relay/stapes/relay"
)

func listen(o *options) (net.Listener, net.PacketConn, error) {
	tcp, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on --listen %s (TCP): %w", o.listen, err)
	}
	if o.plain || o.noQUIC {
		return tcp, nil, nil
	}
	udp, err := net.ListenPacket("udp", tcp.Addr().String())
	if err != nil {
		tcp.Close()
		return nil, nil, fmt.Errorf("listening on %s (UDP, for QUIC): %w", tcp.Addr(), err)
	}
	return tcp, udp, nil
}

func loadTLS(o *options, log *slog.Logger) (*tls.Config, error) {
	if o.plain {
		log.Warn("serving plain HTTP WebSocket without TLS and without QUIC: local development only")
		return nil, nil
	}
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
	}
	cert, err := relay.SelfSigned("localhost", "127.0.0.1", "::1")
	if err != nil {
		return nil, err
	}
	out := o.certOut
	if out == "" {
		out = filepath.Join(o.dataDir, "relay-cert.pem")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := os.WriteFile(out, p, 0o644); err != nil {
		return nil, fmt.Errorf("writing self-signed certificate: %w", err)
	}
	log.Warn("using a self-signed certificate generated for local use; clients must trust it explicitly; use --tls-cert/--tls-key in production", "cert_file", out)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
}

// limitsFile is the JSON form of per-model limits:
// {"models": {"m1": {"open": false, "params": {"gain.l.2k": {"min": -100, "max": 600, "max_step": 60}}}}}
type limitsFile struct {
	Models map[string]struct {
		Open   bool `json:"open"`
		Params map[string]struct {
			Min     int64 `json:"min"`
			Max     int64 `json:"max"`
			MaxStep int64 `json:"max_step"`
		} `json:"params"`
	} `json:"models"`
}

func loadLimits(path string) (map[string]relay.ModelLimits, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading --limits: %w", err)
	}
	var f limitsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parsing --limits %s: %w", path, err)
	}
	out := map[string]relay.ModelLimits{}
	for model, m := range f.Models {
		ml := relay.ModelLimits{Open: m.Open, Params: map[string]relay.ParamLimit{}}
		for name, p := range m.Params {
			if p.Min > p.Max || p.MaxStep < 0 {
				return nil, fmt.Errorf("--limits: model %s parameter %s: need min <= max and max_step >= 0", model, name)
			}
			ml.Params[name] = relay.ParamLimit{Min: p.Min, Max: p.Max, MaxStep: p.MaxStep}
		}
		out[model] = ml
	}
	return out, nil
}

type opsServer struct {
	ln net.Listener
	hs *http.Server
}

func (o *opsServer) Addr() string { return o.ln.Addr().String() }
func (o *opsServer) Close() error { return o.hs.Close() }

// startOps serves /metrics, /healthz (the process works), /readyz (it
// admits sessions) and pprof, the last to loopback clients only.
func startOps(addr string, reg *prometheus.Registry, srv *relay.Server, relayMap func() []byte, log *slog.Logger) (*opsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on --ops %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !srv.Ready() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/v1/map", func(w http.ResponseWriter, r *http.Request) {
		m := relayMap()
		if m == nil {
			http.Error(w, "no relay map yet (no --control-url, or controld not reached)", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(m)
	})
	pp := http.NewServeMux()
	pp.HandleFunc("/debug/pprof/", pprof.Index)
	pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
	pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			http.Error(w, "pprof is served to loopback only", http.StatusForbidden)
			return
		}
		pp.ServeHTTP(w, r)
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Error("ops server", "err", err)
		}
	}()
	return &opsServer{ln: ln, hs: hs}, nil
}

// quicResetKey returns the client QUIC listener's stateless reset key from
// DATA/quic-reset.key, creating the file (32 random bytes, 0600) on first
// start, so a restarted relay resets its former process's connections.
func quicResetKey(dataDir string) (*quic.StatelessResetKey, error) {
	path := filepath.Join(dataDir, "quic-reset.key")
	var k quic.StatelessResetKey
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == len(k):
		copy(k[:], b)
		return &k, nil
	case err == nil:
		return nil, fmt.Errorf("%s holds %d bytes, want %d: delete it and restart (a new key is made)", path, len(b), len(k))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("reading the QUIC reset key: %w", err)
	}
	if _, err := rand.Read(k[:]); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, k[:], 0o600); err != nil {
		return nil, fmt.Errorf("writing the QUIC reset key: %w", err)
	}
	return &k, nil
}
