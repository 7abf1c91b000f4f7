package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
)

// Choosing a relay: with several relays to choose from — --relay-map (the
// control plane's public map) or several hosts in --url — the sim probes
// each (client.Probe: PINGs before HELLO, median of 5) and connects to
// the nearest first, the others after it in RTT order. It prints what it
// measured and why it chose. With --report-rtts the patient sim reports
// the RTTs to the control plane, for placing its next sessions.

// probeFlags are the flags of relay choice.
type probeFlags struct {
	relayMap  string
	transport string
	samples   int
	report    bool
}

func (p *probeFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&p.relayMap, "relay-map", "", "control plane relay map `URL` (https://controld/v1/map): probe its relays and connect to the nearest")
	fs.StringVar(&p.transport, "transport", "ws", "with --relay-map: transport to probe and connect with, ws or quic")
	fs.IntVar(&p.samples, "probe-samples", 5, "PINGs per relay when probing (1..32); the median counts")
	fs.BoolVar(&p.report, "report-rtts", false, "patient, with --relay-map and a controld token: report the measured RTTs for placing the next sessions")
}

// choose orders cfg.URLs nearest first when there is a choice, and prints
// why. It returns the measurements (nil when nothing was probed).
func (p *probeFlags) choose(ctx context.Context, cfg *client.Config, out *lineWriter) ([]client.Measurement, error) {
	if p.samples < 1 || p.samples > 32 {
		return nil, usagef("--probe-samples must be 1..32")
	}
	var cands []client.Candidate
	urls := map[string][]string{} // candidate id → URLs to connect with, preferred first
	if p.relayMap != "" {
		if p.transport != "ws" && p.transport != "quic" {
			return nil, usagef("--transport must be ws or quic")
		}
		m, err := client.FetchMap(ctx, &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.TLS}}, p.relayMap)
		if err != nil {
			return nil, fmt.Errorf("reading the relay map: %w", err)
		}
		cands = m.Candidates(p.transport)
		if len(cands) == 0 {
			return nil, fmt.Errorf("the relay map at %s lists no healthy relay with a %s address", p.relayMap, p.transport)
		}
		for _, r := range m.Relays {
			for _, t := range []string{p.transport, "ws", "quic"} {
				if u := r.Addresses[t]; u != "" && !slices.Contains(urls[r.ID], u) {
					urls[r.ID] = append(urls[r.ID], u)
				}
			}
		}
	} else {
		for _, raw := range cfg.URLs {
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				return nil, usagef("--url %q is not a relay URL", raw)
			}
			if _, seen := urls[u.Host]; !seen {
				cands = append(cands, client.Candidate{ID: u.Host, URL: raw})
			}
			urls[u.Host] = append(urls[u.Host], raw)
		}
		if len(cands) < 2 {
			return nil, nil // one relay: nothing to choose
		}
	}
	pr := &client.Prober{Samples: p.samples, TLS: cfg.TLS, DialContext: cfg.DialContext, ListenPacket: cfg.ListenPacket}
	ms := pr.Probe(ctx, cands)
	out.printf("probed %d relays (%d PINGs each before HELLO, median):", len(ms), p.samples)
	for _, m := range ms {
		name := m.Candidate.ID
		if m.Candidate.Region != "" {
			name += " (" + m.Candidate.Region + ")"
		}
		if m.Err != nil {
			out.printf("  %-24s %s: not measured: %v", name, m.Candidate.URL, m.Err)
			continue
		}
		out.printf("  %-24s %s: %s (min %s, connect %s)", name, m.Candidate.URL, msec(m.RTT), msec(slices.Min(m.Samples)), msec(m.Connect))
	}
	sel, err := client.NewSelector(client.SelectorConfig{})
	if err != nil {
		return nil, err
	}
	ch, err := sel.Update(ms)
	if err != nil {
		return ms, fmt.Errorf("no relay answered the probe: %w", err)
	}
	out.printf("chose %s — %s", ch.Candidate.ID, ch.Reason)
	// The chosen relay first, the others (measured ones by RTT) after it.
	order := slices.Clone(ms)
	slices.SortStableFunc(order, func(a, b client.Measurement) int {
		switch {
		case a.Candidate.ID == ch.Candidate.ID:
			return -1
		case b.Candidate.ID == ch.Candidate.ID:
			return 1
		case (a.Err == nil) != (b.Err == nil):
			if a.Err == nil {
				return -1
			}
			return 1
		}
		return int(a.RTT - b.RTT)
	})
	cfg.URLs = cfg.URLs[:0:0]
	for _, m := range order {
		cfg.URLs = append(cfg.URLs, urls[m.Candidate.ID]...)
	}
	return ms, nil
}

// reportRTTs sends the patient's measurements to the control plane that
// served the relay map (PUT /v1/placement/rtts with the session token).
func (p *probeFlags) reportRTTs(ctx context.Context, cfg client.Config, ms []client.Measurement, out *lineWriter) error {
	u, err := url.Parse(p.relayMap)
	if err != nil {
		return err
	}
	u.Path, u.RawQuery = "/v1/placement/rtts", ""
	tok, err := cfg.Token(ctx)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"rtts": client.RTTMillis(ms)})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+string(tok))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.TLS}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reporting RTTs: %w", err)
	}
	defer resp.Body.Close()
	ans, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reporting RTTs: the control plane answered %s: %s", resp.Status, strings.TrimSpace(string(ans)))
	}
	out.printf("reported RTTs to %d relays to the control plane for placing the next sessions", len(client.RTTMillis(ms)))
	return nil
}

// msec formats d as milliseconds with one decimal.
func msec(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
