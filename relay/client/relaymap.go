package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// RelayMap is the relay map the control plane serves without a credential
// (GET /v1/map): regions and relays with health and load.
type RelayMap struct {
	Regions []MapRegion `json:"regions"`
	Relays  []MapRelay  `json:"relays"`
}

// MapRegion is one region of the relay map.
type MapRegion struct {
	Name    string `json:"name"`
	Relays  int    `json:"relays"`
	Healthy int    `json:"healthy"` // healthy and not draining
}

// MapRelay is one relay of the relay map.
type MapRelay struct {
	ID        string            `json:"id"`
	Region    string            `json:"region"`
	Addresses map[string]string `json:"addresses"` // "ws": wss://…/v1/connect, "quic": quic://host:port
	Load      int               `json:"load"`
	Capacity  int               `json:"capacity"`
	Draining  bool              `json:"draining"`
	Healthy   bool              `json:"healthy"`
}

// maxMapBytes bounds the relay map read by FetchMap.
const maxMapBytes = 4 << 20

// FetchMap gets the relay map from url (the control plane's /v1/map) with
// hc (nil: http.DefaultClient).
func FetchMap(ctx context.Context, hc *http.Client, url string) (*RelayMap, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("client: relay map: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: relay map: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("client: relay map: %s answered %s", url, resp.Status)
	}
	var m RelayMap
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMapBytes)).Decode(&m); err != nil {
		return nil, fmt.Errorf("client: relay map: %w", err)
	}
	return &m, nil
}

// Candidates returns the relays worth probing — healthy, not draining, with
// an address for transport ("ws" or "quic") — in map order.
func (m *RelayMap) Candidates(transport string) []Candidate {
	var out []Candidate
	for _, r := range m.Relays {
		u := r.Addresses[transport]
		if !r.Healthy || r.Draining || u == "" {
			continue
		}
		if _, err := parseURL(u); err != nil {
			continue
		}
		out = append(out, Candidate{ID: r.ID, Region: r.Region, URL: u})
	}
	return out
}

// RTTMillis turns measurements into what the control plane takes for
// placement ("rtts": {"relay-id": ms}): the measured relays only.
func RTTMillis(ms []Measurement) map[string]float64 {
	out := make(map[string]float64, len(ms))
	for _, m := range ms {
		if m.Err == nil {
			out[m.Candidate.ID] = float64(m.RTT.Microseconds()) / 1000
		}
	}
	return out
}
