package controlserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
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
	for _, k := range []string{addrTURN, addrTURNS} {
		if v, ok := a[k]; ok && !checkTURNAddress(v) {
			return badRequest("addresses.%s must be host:port", k)
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

// MaxHeartbeatSessions is the most session ids one heartbeat may list
// (control.Directory splits longer lists over several heartbeats).
const MaxHeartbeatSessions = 20_000

// maxHeartbeatBody bounds a heartbeat body: MaxHeartbeatSessions ids of
// up to 128 bytes, quoted, plus the rest.
const maxHeartbeatBody = 4 << 20

type heartbeatRequest struct {
	Load      int               `json:"load"`
	Draining  bool              `json:"draining"`
	Addresses map[string]string `json:"addresses,omitempty"` // absent: unchanged
	// Sessions are the ids of the sessions active on the relay; the
	// answer names those that are over.
	Sessions []string `json:"sessions,omitempty"`
}

type heartbeatAnswer struct {
	ID                string `json:"id"`
	HeartbeatInterval int    `json:"heartbeat_interval_seconds"`
	// Ended are those of the request's sessions that are ended or
	// expired (in the relay's tenant; any tenant for a shared relay).
	Ended []string `json:"ended"`
}

// heartbeat records a relay's load and draining flag (and addresses, if
// sent), and tells it which of its sessions are over.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	var req heartbeatRequest
	if err := decodeJSON(w, r, max(s.cfg.MaxJSONBody, maxHeartbeatBody), &req); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusRequestEntityTooLarge {
			ae.Message += fmt.Sprintf("; list at most %d session ids per heartbeat", MaxHeartbeatSessions)
		}
		return err
	}
	if req.Load < 0 {
		return badRequest("load must not be negative")
	}
	if err := checkAddresses(req.Addresses); err != nil {
		return err
	}
	if len(req.Sessions) > MaxHeartbeatSessions {
		return errorf(http.StatusRequestEntityTooLarge, "too_many_sessions",
			"a heartbeat may list at most %d session ids (got %d); split them over several heartbeats", MaxHeartbeatSessions, len(req.Sessions))
	}
	for i, id := range req.Sessions {
		if id == "" || len(id) > 128 {
			return badRequest("sessions[%d] is not a session id (1 to 128 bytes)", i)
		}
	}
	ctx := r.Context()
	out, err := s.st.HeartbeatNode(ctx, n.TenantID, n.ID, pgstore.Heartbeat{Load: req.Load, Draining: req.Draining, Addresses: req.Addresses})
	if err != nil {
		return s.storeError(r, "relay", err)
	}
	ans := heartbeatAnswer{ID: out.ID, HeartbeatInterval: int(s.cfg.HeartbeatInterval / time.Second), Ended: []string{}}
	if len(req.Sessions) > 0 {
		tenant := n.TenantID
		if tenant == pgstore.SystemTenant {
			tenant = "" // a shared relay holds sessions of every tenant
		}
		ended, err := s.st.EndedSessions(ctx, tenant, req.Sessions)
		if err != nil {
			return s.storeError(r, "sessions", err)
		}
		if ended != nil {
			ans.Ended = ended
		}
	}
	writeJSON(w, http.StatusOK, ans)
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
	ans, err := s.buildMap(r.Context(), tenant, n.TenantID)
	if err != nil {
		return s.storeError(r, "relay map", err)
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// buildMap builds the relay map: the relays of nodesTenant ("" every
// relay; pgstore.SystemTenant the shared ones only) with health and load,
// and the feature flags in force for flagsTenant.
func (s *Server) buildMap(ctx context.Context, nodesTenant, flagsTenant string) (*relayMapAnswer, error) {
	nodes, err := s.st.Nodes(ctx, nodesTenant)
	if err != nil {
		return nil, err
	}
	fs, err := s.st.Flags(ctx, flagsTenant)
	if err != nil {
		return nil, err
	}
	flags := make(map[string]flag, len(fs))
	for name, f := range fs {
		flags[name] = flag{Enabled: f.Enabled, Value: f.Value}
	}
	now := s.cfg.Now()
	ans := &relayMapAnswer{GeneratedAt: now.UTC(), Regions: []mapRegion{}, Relays: make([]mapRelay, 0, len(nodes)), Flags: flags}
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
	return ans, nil
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

type relaySessionAnswer struct {
	TenantID  string     `json:"tenant_id"`
	SessionID string     `json:"session_id"`
	State     string     `json:"state"`
	Ended     bool       `json:"ended"` // ended or expired: refuse and close it
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// relaySession answers a session's state, so a relay admitting a token
// can refuse a session that is over (control.Directory.SessionEnded).
func (s *Server) relaySession(w http.ResponseWriter, r *http.Request, n *pgstore.Node) error {
	tenant, id := r.PathValue("tenant"), r.PathValue("session")
	if n.TenantID != pgstore.SystemTenant && n.TenantID != tenant {
		return forbidden("wrong_tenant", "this relay serves another tenant")
	}
	x, err := s.st.Session(r.Context(), tenant, id)
	if err != nil {
		return s.storeError(r, "session", err)
	}
	writeJSON(w, http.StatusOK, relaySessionAnswer{TenantID: x.TenantID, SessionID: x.ID, State: x.State,
		Ended: sessionOver(x.State), EndedAt: x.EndedAt})
	return nil
}

// sessionOver reports whether a session in state is over.
func sessionOver(state string) bool {
	return state == pgstore.StateEnded || state == pgstore.StateExpired
}
