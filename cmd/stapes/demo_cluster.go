package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/client"
)

// The full demo runs a relay network on loopback: one relayd per region,
// each with its own data directory, node credential and ports, gossiping
// membership (joined to the first, encrypted with a key under the demo
// directory) and linked to the others for replication with a shared peer
// secret. The relays share one self-signed certificate so the simulated
// clients trust whichever relay a session lands on.

// demoRegions are the regions of the demo network, one relay each.
var demoRegions = []string{"eu", "us", "ap"}

// demoRelay is one relayd of the demo network.
type demoRelay struct {
	id, region string
	addr, ops  string // client (TCP+UDP) and ops addresses
	gossip     string
	c          *child
}

// demoClusterFiles are the files every demo relay shares.
type demoClusterFiles struct {
	cert, key  string // TLS certificate (trusted by the sims) and key
	peerSecret string // relay-to-relay secret
	gossipKey  string // gossip encryption key, hex
}

// writeDemoClusterFiles creates the shared certificate (each run) and the
// peer secret and gossip key (once).
func writeDemoClusterFiles(dir string) (demoClusterFiles, error) {
	f := demoClusterFiles{cert: filepath.Join(dir, "relay-cert.pem"), key: filepath.Join(dir, "relay-key.pem"),
		gossipKey: filepath.Join(dir, "gossip-key")}
	cert, err := relay.SelfSigned("127.0.0.1", "localhost", "::1")
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return f, err
	}
	if err := os.WriteFile(f.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		return f, err
	}
	if f.peerSecret, err = secretFile(filepath.Join(dir, "peer-secret")); err != nil {
		return f, err
	}
	if _, err := os.Stat(f.gossipKey); err != nil {
		key := make([]byte, 32)
		rand.Read(key)
		if err := os.WriteFile(f.gossipKey, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

// portPlus returns addr with its port raised by n (a kernel-picked port
// stays 0).
func portPlus(addr string, n int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", usagef("bad address %q: %v", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", usagef("bad port in %q", addr)
	}
	if p == 0 {
		return addr, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(p+n)), nil
}

// startDemoCluster creates the relays' nodes in controld (admin runs a
// 'stapes admin' verb) and starts one relayd per region: relay i on the
// --listen port plus i and the --ops port plus 10·i (clear of controld's
// ops port), gossip on 127.0.0.1:7946+i, peer links on 127.0.0.1:7966+i;
// a busy port is replaced by a free one. The
// caller stops the relays it gets back (also on error).
func (d *demoCmd) startDemoCluster(ctx context.Context, bin, dir, apiURL string, admin func(...string) error, out *lineWriter) ([]*demoRelay, demoClusterFiles, error) {
	files, err := writeDemoClusterFiles(dir)
	if err != nil {
		return nil, files, err
	}
	gossipBase, peerBase := "127.0.0.1:7946", "127.0.0.1:7966"
	if strings.HasSuffix(d.listen, ":0") { // tests: every port kernel-picked
		gossipBase, peerBase = "127.0.0.1:0", "127.0.0.1:0"
	}
	var relays []*demoRelay
	for i, region := range demoRegions {
		r := &demoRelay{id: "demo-" + region, region: region}
		cred := filepath.Join(dir, r.id+"-credential")
		os.Remove(cred)
		if err := admin("create-relay", "--id", r.id, "--region", region, "--capacity", "1000", "--credential-out", cred); err != nil {
			if err := admin("create-relay", "--id", r.id, "--region", region, "--rotate", "--credential-out", cred); err != nil {
				return relays, files, err
			}
		}
		var peer string
		for _, a := range []struct {
			dst  *string
			base string
			step int
		}{{&r.addr, d.listen, 1}, {&r.ops, d.ops, 10}, {&r.gossip, gossipBase, 1}, {&peer, peerBase, 1}} {
			want, err := portPlus(a.base, a.step*i)
			if err != nil {
				return relays, files, err
			}
			if *a.dst, err = freeAddr(want); err != nil {
				return relays, files, err
			}
		}
		args := []string{"--listen", r.addr, "--ops", r.ops, "--data", filepath.Join(dir, r.id+"-data"),
			"--tls-cert", files.cert, "--tls-key", files.key, "--relay-id", r.id, "--region", region,
			"--control-url", apiURL, "--node-credential-file", cred, "--advertise", r.addr,
			"--peer-listen", peer, "--peer-secret-file", files.peerSecret,
			"--gossip-listen", r.gossip, "--gossip-key-file", files.gossipKey, "--gossip-profile", "local", "--gossip-cluster", "stapes-demo"}
		if i > 0 {
			args = append(args, "--gossip-seeds", relays[0].gossip)
		}
		addr := r.addr
		r.c, err = startChild(ctx, "relayd-"+region, bin, args, filepath.Join(dir, "relayd-"+region+".log"), func() bool { return dialable(addr) }, out)
		if err != nil {
			return relays, files, err
		}
		relays = append(relays, r)
	}
	return relays, files, nil
}

// gossipMap is what relayd's /v1/map serves with gossip on (the part
// shown).
type gossipMap struct {
	Self   string `json:"self"`
	Relays []struct {
		ID        string            `json:"id"`
		Region    string            `json:"region"`
		Addresses map[string]string `json:"addresses"`
		Load      int               `json:"load"`
		State     string            `json:"state"`
	} `json:"relays"`
}

func fetchGossipMap(ctx context.Context, ops string) (*gossipMap, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+"/v1/map", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	var m gossipMap
	return &m, json.NewDecoder(resp.Body).Decode(&m)
}

// printRelayMap waits (up to 15 s) until the first relay's gossip view
// has every relay alive, and prints it.
func printRelayMap(ctx context.Context, relays []*demoRelay, out *lineWriter) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := fetchGossipMap(ctx, relays[0].ops)
		alive := 0
		if err == nil {
			for _, r := range m.Relays {
				if r.State == "alive" {
					alive++
				}
			}
			if alive == len(relays) {
				out.printf("relay map (gossip, as %s sees it at http://%s/v1/map):", m.Self, relays[0].ops)
				for _, r := range m.Relays {
					ops := ""
					if i := slices.IndexFunc(relays, func(d *demoRelay) bool { return d.id == r.ID }); i >= 0 {
						ops = "  ops http://" + relays[i].ops
					}
					out.printf("  %-8s %-3s %-6s %s  %s%s", r.ID, r.Region, r.State, r.Addresses["ws"], r.Addresses["quic"], ops)
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the relays did not form one gossip cluster within 15s (%d of %d alive, %v); see the relayd-*.log files", alive, len(relays), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // polling relayd's map
		}
	}
}

// probeForPlacement is what the clinician's software does before creating
// a session: read controld's public relay map, wait (up to 20 s) until
// every demo relay is in it, healthy, at the address it was started on
// (a map from an earlier run may still list old ones), probe them (RTT,
// PINGs before HELLO) and return the RTTs by relay id for POST
// /v1/sessions.
func probeForPlacement(ctx context.Context, apiURL, certFile string, relays []*demoRelay, out *lineWriter) (map[string]float64, error) {
	cf := connFlags{cert: certFile, fromMap: true}
	cfg, err := cf.tlsOnly()
	if err != nil {
		return nil, err
	}
	var cands []client.Candidate
	deadline := time.Now().Add(20 * time.Second)
	for {
		cands = cands[:0]
		m, err := client.FetchMap(ctx, &http.Client{Timeout: 5 * time.Second}, apiURL+"/v1/map")
		if err == nil {
			for _, c := range m.Candidates("ws") {
				if slices.ContainsFunc(relays, func(r *demoRelay) bool { return r.id == c.ID && strings.Contains(c.URL, "//"+r.addr+"/") }) {
					cands = append(cands, c)
				}
			}
		}
		if len(cands) == len(relays) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("controld's relay map lists %d of the %d demo relays healthy after 20s (%v); see the relayd-*.log files", len(cands), len(relays), err)
		}
		select { // relays register and heartbeat within a moment
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	ms := (&client.Prober{TLS: cfg.TLS}).Probe(ctx, cands)
	rtts := client.RTTMillis(ms)
	if len(rtts) == 0 {
		return nil, errors.New("no relay answered the clinician's probe")
	}
	var parts []string
	for _, m := range ms {
		if m.Err == nil {
			parts = append(parts, fmt.Sprintf("%s %s", m.Candidate.ID, msec(m.RTT)))
		} else {
			parts = append(parts, fmt.Sprintf("%s unreachable", m.Candidate.ID))
		}
	}
	out.printf("clinician probed the relays of controld's map: %s", strings.Join(parts, ", "))
	return rtts, nil
}
