package controlserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/control/pgstore/password"
)

// Operator endpoints: the deployment's administrators manage tenants and
// their people, devices, care relationships, limits and flags, relays and
// signing keys. They authenticate with Config.OperatorToken.

// minPasswordLen is the shortest clinician password accepted.
const minPasswordLen = 10

// checkID reports (as a 400) why v cannot be an id: ids are what tokens
// carry, so the token package's rules apply (1 to 128 bytes of UTF-8
// without control characters); leading or trailing spaces are refused too.
func checkID(name, v string) error {
	switch {
	case v == "":
		return badRequest("%s is required", name)
	case len(v) > 128:
		return badRequest("%s is longer than 128 bytes", name)
	case !utf8.ValidString(v):
		return badRequest("%s is not valid UTF-8", name)
	case strings.TrimSpace(v) != v:
		return badRequest("%s has leading or trailing spaces", name)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return badRequest("%s contains a control character", name)
		}
	}
	return nil
}

func checkIDs(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := checkID(pairs[i], pairs[i+1]); err != nil {
			return err
		}
	}
	return nil
}

type tenantView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.st.Tenants(r.Context())
	if err != nil {
		return s.storeError(r, "tenants", err)
	}
	out := make([]tenantView, 0, len(ts))
	for _, t := range ts {
		out = append(out, tenantView{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": out})
	return nil
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkID("id", req.ID); err != nil {
		return err
	}
	if err := required("name", req.Name); err != nil {
		return err
	}
	if strings.HasPrefix(req.ID, "_") {
		return badRequest("tenant ids starting with '_' are reserved")
	}
	t, err := s.st.CreateTenant(r.Context(), pgstore.Tenant{ID: req.ID, Name: req.Name})
	if err != nil {
		return s.storeError(r, "tenant", err)
	}
	s.log.InfoContext(r.Context(), "tenant created", "tenant", t.ID)
	writeJSON(w, http.StatusCreated, tenantView{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt})
	return nil
}

func (s *Server) createClinician(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenant")
	var req struct {
		ID          string `json:"id"`
		Email       string `json:"email"`
		Password    string `json:"password"`
		Role        string `json:"role,omitempty"`
		DisplayName string `json:"display_name,omitempty"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkIDs("tenant", tenant, "id", req.ID); err != nil {
		return err
	}
	req.Email = strings.ToLower(strings.TrimSpace(req.Email))
	if at := strings.IndexByte(req.Email, '@'); at < 1 || at == len(req.Email)-1 {
		return badRequest("email must be an e-mail address")
	}
	switch {
	case len(req.Password) < minPasswordLen:
		return badRequest("password must be at least %d characters", minPasswordLen)
	case len(req.Password) > password.MaxLen:
		return badRequest("password is longer than %d bytes", password.MaxLen)
	}
	if req.Role != "" && req.Role != "clinician" && req.Role != "admin" {
		return badRequest(`role must be "clinician" or "admin"`)
	}
	hash, err := password.HashWith(*s.cfg.Password, req.Password)
	if err != nil {
		return err
	}
	c, err := s.st.CreateClinician(r.Context(), pgstore.Clinician{TenantID: tenant, ID: req.ID, Email: req.Email,
		PasswordHash: hash, Role: req.Role, DisplayName: req.DisplayName})
	if err != nil {
		return s.storeError(r, "clinician (or its tenant)", err)
	}
	s.log.InfoContext(r.Context(), "clinician created", "tenant", tenant, "clinician", c.ID)
	writeJSON(w, http.StatusCreated, viewClinician(c))
	return nil
}

func (s *Server) createPatient(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenant")
	var req struct {
		ID          string `json:"id"`
		DisplayName string `json:"display_name,omitempty"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkIDs("tenant", tenant, "id", req.ID); err != nil {
		return err
	}
	p, err := s.st.CreatePatient(r.Context(), pgstore.Patient{TenantID: tenant, ID: req.ID, DisplayName: req.DisplayName})
	if err != nil {
		return s.storeError(r, "patient (or its tenant)", err)
	}
	s.log.InfoContext(r.Context(), "patient created", "tenant", tenant, "patient", p.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"id": p.ID, "tenant_id": tenant, "display_name": p.DisplayName, "created_at": p.CreatedAt})
	return nil
}

func (s *Server) createDevice(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenant")
	var req struct {
		Serial    string `json:"serial"`
		Model     string `json:"model"`
		Firmware  string `json:"firmware,omitempty"`
		PatientID string `json:"patient_id,omitempty"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkIDs("tenant", tenant, "serial", req.Serial, "model", req.Model); err != nil {
		return err
	}
	if req.PatientID != "" {
		if err := checkID("patient_id", req.PatientID); err != nil {
			return err
		}
	}
	d, err := s.st.CreateDevice(r.Context(), pgstore.Device{TenantID: tenant, Serial: req.Serial, Model: req.Model,
		Firmware: req.Firmware, PatientID: req.PatientID})
	if err != nil {
		return s.storeError(r, "device (or its tenant or patient)", err)
	}
	// The serial is an identifier (HIPAA): never logged.
	s.log.InfoContext(r.Context(), "device created", "tenant", tenant, "patient", d.PatientID)
	writeJSON(w, http.StatusCreated, map[string]any{"serial": d.Serial, "tenant_id": tenant, "model": d.Model,
		"firmware": d.Firmware, "patient_id": d.PatientID, "config_version": d.ConfigVersion})
	return nil
}

func (s *Server) assignDevice(w http.ResponseWriter, r *http.Request) error {
	tenant, serial := r.PathValue("tenant"), r.PathValue("serial")
	var req struct {
		PatientID string `json:"patient_id"` // "" unassigns
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := s.st.AssignDevice(r.Context(), tenant, serial, req.PatientID); err != nil {
		return s.storeError(r, "device (or patient)", err)
	}
	s.log.InfoContext(r.Context(), "device assigned", "tenant", tenant, "patient", req.PatientID)
	writeJSON(w, http.StatusOK, map[string]any{"serial": serial, "tenant_id": tenant, "patient_id": req.PatientID})
	return nil
}

func (s *Server) addCare(w http.ResponseWriter, r *http.Request) error {
	tenant := r.PathValue("tenant")
	var req struct {
		ClinicianID string `json:"clinician_id"`
		PatientID   string `json:"patient_id"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkIDs("clinician_id", req.ClinicianID, "patient_id", req.PatientID); err != nil {
		return err
	}
	if err := s.st.AddCare(r.Context(), tenant, req.ClinicianID, req.PatientID); err != nil {
		return s.storeError(r, "clinician or patient", err)
	}
	s.log.InfoContext(r.Context(), "care relationship added", "tenant", tenant, "clinician", req.ClinicianID, "patient", req.PatientID)
	writeJSON(w, http.StatusOK, map[string]any{"tenant_id": tenant, "clinician_id": req.ClinicianID, "patient_id": req.PatientID})
	return nil
}

func (s *Server) removeCare(w http.ResponseWriter, r *http.Request) error {
	tenant, clinician, patient := r.PathValue("tenant"), r.PathValue("clinician"), r.PathValue("patient")
	if err := s.st.RemoveCare(r.Context(), tenant, clinician, patient); err != nil {
		return s.storeError(r, "care relationship", err)
	}
	s.log.InfoContext(r.Context(), "care relationship removed", "tenant", tenant, "clinician", clinician, "patient", patient)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setModelLimit(w http.ResponseWriter, r *http.Request) error {
	tenant, model, param := r.PathValue("tenant"), r.PathValue("model"), r.PathValue("parameter")
	var req struct {
		Min     *int64 `json:"min"`
		Max     *int64 `json:"max"`
		MaxStep int64  `json:"max_step"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	switch {
	case req.Min == nil || req.Max == nil:
		return badRequest("min and max are required")
	case *req.Min > *req.Max:
		return badRequest("min must not be above max")
	case req.MaxStep < 0:
		return badRequest("max_step must not be negative (0: no step limit)")
	case param == "" || len(param) > 64:
		return badRequest("the parameter name must be 1 to 64 bytes")
	}
	l := pgstore.ParamLimit{Min: *req.Min, Max: *req.Max, MaxStep: req.MaxStep}
	if err := s.st.SetModelLimit(r.Context(), tenant, model, param, l); err != nil {
		return s.storeError(r, "tenant", err)
	}
	s.log.InfoContext(r.Context(), "model limit set", "tenant", tenant, "model", model, "parameter", param)
	writeJSON(w, http.StatusOK, map[string]any{"tenant_id": tenant, "model": model, "parameter": param,
		"min": l.Min, "max": l.Max, "max_step": l.MaxStep})
	return nil
}

// setFlag sets a feature flag of a tenant (pgstore.SystemTenant: every
// tenant).
func (s *Server) setFlag(w http.ResponseWriter, r *http.Request) error {
	tenant, flag := r.PathValue("tenant"), r.PathValue("flag")
	var req struct {
		Enabled     bool            `json:"enabled"`
		Value       json.RawMessage `json:"value,omitempty"`
		Description string          `json:"description,omitempty"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if flag == "" || len(flag) > 128 {
		return badRequest("the flag name must be 1 to 128 bytes")
	}
	if string(req.Value) == "null" {
		req.Value = nil
	}
	if _, err := s.st.SetFlag(r.Context(), pgstore.Flag{TenantID: tenant, Name: flag, Enabled: req.Enabled,
		Value: req.Value, Description: req.Description}); err != nil {
		return s.storeError(r, "tenant", err)
	}
	s.log.InfoContext(r.Context(), "feature flag set", "tenant", tenant, "flag", flag, "enabled", req.Enabled)
	writeJSON(w, http.StatusOK, map[string]any{"tenant_id": tenant, "flag": flag, "enabled": req.Enabled, "value": req.Value})
	return nil
}

type relayAdminView struct {
	ID            string            `json:"id"`
	TenantID      string            `json:"tenant_id"`
	Region        string            `json:"region"`
	Addresses     map[string]string `json:"addresses"`
	Version       string            `json:"version"`
	Capacity      int               `json:"capacity"`
	Load          int               `json:"load"`
	Draining      bool              `json:"draining"`
	Live          bool              `json:"live"`
	LastHeartbeat *time.Time        `json:"last_heartbeat,omitempty"`
}

func (s *Server) listRelays(w http.ResponseWriter, r *http.Request) error {
	nodes, err := s.st.Nodes(r.Context(), "")
	if err != nil {
		return s.storeError(r, "relays", err)
	}
	now := s.cfg.Now()
	out := make([]relayAdminView, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		out = append(out, relayAdminView{ID: n.ID, TenantID: n.TenantID, Region: n.Region, Addresses: n.Addresses,
			Version: n.Version, Capacity: n.Capacity, Load: n.Load, Draining: n.Draining, Live: s.live(n, now), LastHeartbeat: n.LastHeartbeat})
	}
	writeJSON(w, http.StatusOK, map[string]any{"relays": out})
	return nil
}

// createRelay adds a relay node and answers its node credential, once.
// Postgres keeps only its hash. Creating a relay that exists is a 409
// unless "rotate" is set: then it gets a new credential and the old one
// stops working.
func (s *Server) createRelay(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ID       string `json:"id"`
		Region   string `json:"region"`
		TenantID string `json:"tenant_id,omitempty"` // "" = shared (pgstore.SystemTenant)
		Capacity int    `json:"capacity,omitempty"`
		Rotate   bool   `json:"rotate,omitempty"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if req.TenantID == "" {
		req.TenantID = pgstore.SystemTenant
	}
	if err := checkIDs("id", req.ID, "region", req.Region, "tenant_id", req.TenantID); err != nil {
		return err
	}
	if req.Capacity < 0 {
		return badRequest("capacity must not be negative")
	}
	ctx := r.Context()
	old, err := s.st.Node(ctx, req.TenantID, req.ID)
	switch {
	case err == nil && !req.Rotate:
		return errorf(http.StatusConflict, "exists", "relay already exists (set \"rotate\": true to issue a new credential)")
	case err == nil:
		if req.Capacity == 0 {
			req.Capacity = old.Capacity
		}
	case !errors.Is(err, pgstore.ErrNotFound):
		return s.storeError(r, "relay", err)
	}
	cred, hash := newNodeCredential(req.TenantID, req.ID)
	n := pgstore.Node{TenantID: req.TenantID, ID: req.ID, Region: req.Region, CredentialHash: hash,
		Capacity: req.Capacity, Addresses: old.Addresses, Version: old.Version}
	if n, err = s.st.RegisterNode(ctx, n); err != nil {
		return s.storeError(r, "relay (or its tenant)", err)
	}
	s.log.InfoContext(ctx, "relay created", "relay", n.ID, "tenant", n.TenantID, "region", n.Region, "rotated", req.Rotate)
	writeJSON(w, http.StatusCreated, map[string]any{"id": n.ID, "tenant_id": n.TenantID, "region": n.Region,
		"capacity": n.Capacity, "credential": cred})
	return nil
}

type keyAdminView struct {
	KID       string    `json:"kid"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked"`
	CanSign   bool      `json:"can_sign"` // this controld holds the private half
}

func (s *Server) listSigningKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys.reload(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "loading signing keys failed", "err", err)
		return unavailable
	}
	out := make([]keyAdminView, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyAdminView{KID: k.kid, CreatedAt: k.created, Revoked: k.revoked, CanSign: k.signer != nil})
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": out})
	return nil
}

// createSigningKey rotates: the new key signs from now on; older keys stay
// valid for the tokens they signed until revoked.
func (s *Server) createSigningKey(w http.ResponseWriter, r *http.Request) error {
	kid, err := s.keys.create(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "creating a signing key failed", "err", err)
		return unavailable
	}
	writeJSON(w, http.StatusCreated, map[string]any{"kid": kid})
	return nil
}

// revokeSigningKey revokes a kid: relays refuse its tokens once they
// fetch the keys again, and controld stops signing with it.
func (s *Server) revokeSigningKey(w http.ResponseWriter, r *http.Request) error {
	kid := r.PathValue("kid")
	ok, err := s.keys.revoke(r.Context(), kid)
	if err != nil {
		s.log.ErrorContext(r.Context(), "revoking a signing key failed", "err", err)
		return unavailable
	}
	if !ok {
		return notFound("signing key not found")
	}
	writeJSON(w, http.StatusOK, map[string]any{"kid": kid, "revoked": true})
	return nil
}
