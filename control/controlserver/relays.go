package controlserver

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// Relay endpoints: a relay authenticates with its node credential.

// maxAddresses bounds the addresses a relay may report.
const maxAddresses = 16

// checkAddresses refuses addresses that are not "transport": "URL or
// host:port" pairs of sane size.
func checkAddresses(a map[string]string) error {
	if len(a) > maxAddresses {
		return badRequest("at most %d addresses", maxAddresses)
	}
	for k, v := range a {
		if k == "" || len(k) > 32 || len(v) > 512 || strings.ContainsAny(v, " \t\r\n") {
			return badRequest("addresses must map a transport name (1 to 32 bytes) to an address of at most 512 bytes")
		}
	}
	if ws, ok := a["ws"]; ok {
		if u, err := url.Parse(ws); err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
			return badRequest("addresses.ws must be a ws:// or wss:// URL")
		}
	}
	return nil
}

type registerRequest struct {
	Addresses map[string]string `json:"addresses"`
	Version   string            `json:"version,omitempty"`
	Capacity  *int              `json:"capacity,omitempty"`
}

type registerAnswer struct {
	ID                string `json:"id"`
	TenantID          string `json:"tenant_id"`
	Region            string `json:"region"`
	HeartbeatInterval int    `json:"heartbeat_interval_seconds"`
}

// registerRelay records a relay's public addresses, software version and
// capacity. Its region is the operator's (POST /v1/operator/relays).
func (s *Server) registerRelay(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	var req registerRequest
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkAddresses(req.Addresses); err != nil {
		return err
	}
	if len(req.Version) > 128 {
		return badRequest("version is longer than 128 bytes")
	}
	up := *n
	up.Addresses, up.Version = req.Addresses, req.Version
	if req.Capacity != nil {
		if *req.Capacity < 0 {
			return badRequest("capacity must not be negative")
		}
		up.Capacity = *req.Capacity
	}
	out, err := s.st.RegisterNode(r.Context(), up)
	if err != nil {
		return s.storeError(r, "relay", err)
	}
	s.log.InfoContext(r.Context(), "relay registered", "relay", out.ID, "tenant", out.TenantID, "region", out.Region, "version", out.Version)
	writeJSON(w, http.StatusOK, registerAnswer{ID: out.ID, TenantID: out.TenantID, Region: out.Region,
		HeartbeatInterval: int(s.cfg.HeartbeatInterval / time.Second)})
	return nil
}

type heartbeatRequest struct {
	Load      int               `json:"load"`
	Draining  bool              `json:"draining"`
	Addresses map[string]string `json:"addresses,omitempty"` // absent: unchanged
}

// heartbeat records a relay's load and draining flag (and addresses, if
// sent).
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	var req heartbeatRequest
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if req.Load < 0 {
		return badRequest("load must not be negative")
	}
	if err := checkAddresses(req.Addresses); err != nil {
		return err
	}
	out, err := s.st.HeartbeatNode(r.Context(), n.TenantID, n.ID, pgstore.Heartbeat{Load: req.Load, Draining: req.Draining, Addresses: req.Addresses})
	if err != nil {
		return s.storeError(r, "relay", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": out.ID, "heartbeat_interval_seconds": int(s.cfg.HeartbeatInterval / time.Second)})
	return nil
}

type keyView struct {
	KID       string `json:"kid"`
	PublicKey string `json:"public_key"` // standard base64 of the 32-byte Ed25519 public key
	Revoked   bool   `json:"revoked"`
}

// relayKeys answers the token verification keys, revoked ones included
// (flagged) so relays can revoke them in their keyring.
func (s *Server) relayKeys(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	keys, err := s.keys.list(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "loading signing keys failed", "err", err)
		return unavailable
	}
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyView{KID: k.kid, PublicKey: base64.StdEncoding.EncodeToString(k.pub), Revoked: k.revoked})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KID < out[j].KID })
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

type mapRelay struct {
	ID            string            `json:"id"`
	Region        string            `json:"region"`
	Addresses     map[string]string `json:"addresses"`
	Load          int               `json:"load"`
	Capacity      int               `json:"capacity"`
	Draining      bool              `json:"draining"`
	Healthy       bool              `json:"healthy"` // heartbeat within the liveness window
	LastHeartbeat *time.Time        `json:"last_heartbeat,omitempty"`
}

// flag is one feature flag as the relay map serves it.
type flag struct {
	Enabled bool            `json:"enabled"`
	Value   json.RawMessage `json:"value,omitempty"`
}

type mapRegion struct {
	Name    string `json:"name"`
	Relays  int    `json:"relays"`
	Healthy int    `json:"healthy"`
}

type relayMapAnswer struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Regions     []mapRegion     `json:"regions"`
	Relays      []mapRelay      `json:"relays"`
	Flags       map[string]flag `json:"flags"`
}

// relayMap answers the relays the asking relay's tenant may use (every
// relay, for a shared relay) with health and load, and the feature flags.
func (s *Server) relayMap(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	tenant := n.TenantID
	if tenant == pgstore.SystemTenant {
		tenant = ""
	}
	nodes, err := s.st.Nodes(r.Context(), tenant)
	if err != nil {
		return s.storeError(r, "relays", err)
	}
	fs, err := s.st.Flags(r.Context(), n.TenantID)
	if err != nil {
		return s.storeError(r, "feature flags", err)
	}
	flags := make(map[string]flag, len(fs))
	for name, f := range fs {
		flags[name] = flag{Enabled: f.Enabled, Value: f.Value}
	}
	now := s.cfg.Now()
	ans := relayMapAnswer{GeneratedAt: now.UTC(), Regions: []mapRegion{}, Relays: make([]mapRelay, 0, len(nodes)), Flags: flags}
	regions := map[string]*mapRegion{}
	for i := range nodes {
		nd := &nodes[i]
		healthy := nd.LastHeartbeat != nil && now.Sub(*nd.LastHeartbeat) <= s.cfg.RelayLiveness
		ans.Relays = append(ans.Relays, mapRelay{ID: nd.ID, Region: nd.Region, Addresses: nd.Addresses, Load: nd.Load,
			Capacity: nd.Capacity, Draining: nd.Draining, Healthy: healthy, LastHeartbeat: nd.LastHeartbeat})
		rg := regions[nd.Region]
		if rg == nil {
			rg = &mapRegion{Name: nd.Region}
			regions[nd.Region] = rg
		}
		rg.Relays++
		if healthy && !nd.Draining {
			rg.Healthy++
		}
	}
	for _, rg := range regions {
		ans.Regions = append(ans.Regions, *rg)
	}
	sort.Slice(ans.Regions, func(i, j int) bool { return ans.Regions[i].Name < ans.Regions[j].Name })
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// deviceConfig answers a device's authoritative config version and
// parameters, so a relay starting a session learns the base version.
func (s *Server) deviceConfig(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	tenant, serial := r.PathValue("tenant"), r.PathValue("serial")
	if n.TenantID != pgstore.SystemTenant && n.TenantID != tenant {
		return forbidden("wrong_tenant", "this relay serves another tenant")
	}
	c, err := s.st.DeviceConfig(r.Context(), tenant, serial)
	if err != nil {
		return s.storeError(r, "device", err)
	}
	params := c.Params
	if params == nil {
		params = map[string]int64{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant_id": tenant, "serial": serial, "version": c.Version, "params": params})
	return nil
}
