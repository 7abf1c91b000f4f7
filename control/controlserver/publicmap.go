package controlserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// The public relay map: GET /v1/map, without a credential, for apps and
// the portal picking a relay before they hold any token. It is the map
// relays fetch, limited to what anyone may see: the shared relays
// (tenant-dedicated relays would tell who the tenants are) with region,
// public addresses, health, load, capacity and draining, and the
// deployment-wide feature flags (a tenant's own flags are not served
// here). No tenant ids, credentials or versions. It is rate limited per
// source address, built at most once per MapMaxAge, and cacheable: a weak
// ETag over the content (generated_at and heartbeat times left out, so
// the tag changes when the map does, not every heartbeat) answers
// If-None-Match with 304.

// publicMapCache is the last public map built.
type publicMapCache struct {
	mu    sync.Mutex // guards the fields below; held while building, so concurrent misses build once
	body  []byte
	etag  string
	built time.Time
}

type publicMapAnswer struct {
	GeneratedAt time.Time       `json:"generated_at"`
	MaxAge      int             `json:"max_age_seconds"`
	Regions     []mapRegion     `json:"regions"`
	Relays      []mapRelay      `json:"relays"` // without last_heartbeat
	Flags       map[string]flag `json:"flags"`
}

// publicMap serves GET /v1/map.
func (s *Server) publicMap(w http.ResponseWriter, r *http.Request) error {
	if ok, wait := s.limits.mapIP.take(s.cfg.ClientIP(r), s.cfg.Now()); !ok {
		return s.throttle(w, "map", "ip", wait, "too many relay map requests from your address")
	}
	body, etag, err := s.publicMapBody(r.Context())
	if err != nil {
		return s.storeError(r, "relay map", err)
	}
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.cfg.MapMaxAge/time.Second)))
	h.Set("Vary", "Accept-Encoding")
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// publicMapBody returns the public map and its ETag, rebuilding them from
// Postgres when the last build is older than MapMaxAge.
func (s *Server) publicMapBody(ctx context.Context) ([]byte, string, error) {
	c := &s.pubMap
	c.mu.Lock()
	defer c.mu.Unlock()
	now := s.cfg.Now()
	if c.body != nil && now.Sub(c.built) < s.cfg.MapMaxAge {
		return c.body, c.etag, nil
	}
	m, err := s.buildMap(ctx, pgstore.SystemTenant, pgstore.SystemTenant)
	if err != nil {
		return nil, "", err
	}
	ans := publicMapAnswer{MaxAge: int(s.cfg.MapMaxAge / time.Second), Regions: m.Regions, Relays: m.Relays, Flags: m.Flags}
	for i := range ans.Relays {
		r := &ans.Relays[i]
		r.LastHeartbeat = nil // changes every heartbeat; healthy says what a client needs
		r.Addresses = clientAddresses(r.Addresses)
	}
	content, err := json.Marshal(ans) // GeneratedAt zero: the tag covers the content only
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(content)
	ans.GeneratedAt = m.GeneratedAt
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ans); err != nil {
		return nil, "", err
	}
	c.body, c.etag, c.built = buf.Bytes(), `W/"`+hex.EncodeToString(sum[:12])+`"`, now
	return c.body, c.etag, nil
}

// etagMatch reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}

// internalAddresses are address kinds relays publish for each other (gossip
// seeds), never shown to clients.
var internalAddresses = []string{"gossip"}

// clientAddresses returns addrs without the internal kinds.
func clientAddresses(addrs map[string]string) map[string]string {
	out := make(map[string]string, len(addrs))
	for k, v := range addrs {
		if !slices.Contains(internalAddresses, k) {
			out[k] = v
		}
	}
	return out
}
