package controlserver

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/token"
)

type deviceView struct {
	Serial        string `json:"serial"`
	Model         string `json:"model"`
	Firmware      string `json:"firmware"`
	ConfigVersion uint64 `json:"config_version"`
}

func viewDevice(d pgstore.Device) deviceView {
	return deviceView{Serial: d.Serial, Model: d.Model, Firmware: d.Firmware, ConfigVersion: d.ConfigVersion}
}

type patientView struct {
	ID          string       `json:"id"`
	DisplayName string       `json:"display_name,omitempty"`
	Devices     []deviceView `json:"devices"`
}

// patients lists the clinician's patients in care with their devices.
func (s *Server) patients(w http.ResponseWriter, r *http.Request, a *clinicianAuth) error {
	ps, err := s.st.ClinicianPatients(r.Context(), a.claims.Tenant, a.claims.Clinician)
	if err != nil {
		return s.storeError(r, "patients", err)
	}
	out := make([]patientView, 0, len(ps))
	for _, p := range ps {
		v := patientView{ID: p.ID, DisplayName: p.DisplayName, Devices: make([]deviceView, 0, len(p.Devices))}
		for _, d := range p.Devices {
			v.Devices = append(v.Devices, viewDevice(d))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"patients": out})
	return nil
}

type sessionRequest struct {
	PatientID    string `json:"patient_id"`
	DeviceSerial string `json:"device_serial,omitempty"`
	Mode         string `json:"mode,omitempty"`   // "advanced" (default) or "standard"
	Region       string `json:"region,omitempty"` // preferred relay region
	// RTTs the clinician measured: relay id → ms (placement.go).
	RTTs map[string]float64 `json:"rtts,omitempty"`
}

type relayView struct {
	ID      string `json:"id"`
	Region  string `json:"region"`
	WSURL   string `json:"ws_url"`
	QUICURL string `json:"quic_url,omitempty"`
}

type sessionAnswer struct {
	SessionID      string      `json:"session_id"`
	Mode           string      `json:"mode"`
	Relay          relayView   `json:"relay"`
	ClinicianToken string      `json:"clinician_token"`
	PatientToken   string      `json:"patient_token"`
	KeyID          string      `json:"kid"`
	ExpiresAt      time.Time   `json:"expires_at"`
	Device         *deviceView `json:"device,omitempty"`
	// Placement says how the relay was chosen (new sessions only).
	Placement *placementView `json:"placement,omitempty"`
	// ICEServers: the session's relay's TURN, with a credential for this
	// session (turncreds.go); absent without TURN.
	ICEServers []iceServer `json:"ice_servers,omitempty"`
}

// createSession creates a fitting session for a patient in the
// clinician's care, places it on a relay and mints a session token for
// each side.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request, a *clinicianAuth) error {
	ctx := r.Context()
	var req sessionRequest
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := required("patient_id", req.PatientID); err != nil {
		return err
	}
	if err := checkRTTs(req.RTTs); err != nil {
		return err
	}
	switch req.Mode {
	case "":
		req.Mode = pgstore.ModeAdvanced
	case pgstore.ModeAdvanced, pgstore.ModeStandard:
	default:
		return badRequest("mode must be %q or %q", pgstore.ModeAdvanced, pgstore.ModeStandard)
	}
	tenant, clinician := a.claims.Tenant, a.claims.Clinician
	if _, err := s.st.Patient(ctx, tenant, req.PatientID); err != nil {
		if errors.Is(err, pgstore.ErrNotFound) {
			// Another clinic's patient, or none: the same 403 as a patient of
			// this clinic not in care, so the answer reveals nothing.
			return forbidden("not_in_care", "the patient is not in your care")
		}
		return s.storeError(r, "patient", err)
	}
	inCare, err := s.st.InCare(ctx, tenant, clinician, req.PatientID)
	if err != nil {
		return s.storeError(r, "care relationship", err)
	}
	if !inCare {
		s.log.InfoContext(ctx, "session refused: patient not in care", "tenant", tenant, "clinician", clinician,
			"patient", req.PatientID, "request_id", requestID(ctx))
		return forbidden("not_in_care", "the patient is not in your care")
	}
	dev, err := s.assignedDevice(r, tenant, req.DeviceSerial, req.PatientID)
	if err != nil {
		return err
	}
	node, placed, err := s.placeSession(ctx, tenant, clinician, req.PatientID, req.Region, req.RTTs)
	if err != nil {
		return s.relayError(r, err)
	}
	signer, err := s.signer(ctx)
	if err != nil {
		return err
	}
	x := pgstore.Session{TenantID: tenant, ID: "ses-" + rand.Text(), ClinicianID: clinician, PatientID: req.PatientID,
		DeviceSerial: req.DeviceSerial, RelayNodeID: node.ID, Mode: req.Mode}
	x, err = s.st.CreateSession(ctx, x)
	switch {
	case errors.Is(err, pgstore.ErrNotInCare): // care ended meanwhile
		return forbidden("not_in_care", "the patient is not in your care")
	case errors.Is(err, pgstore.ErrDeviceNotAssigned):
		return forbidden("device_not_assigned", "the device is not assigned to the patient")
	case err != nil:
		return s.storeError(r, "session", err)
	}
	ans, err := s.mint(x, clinician, signer, dev, node)
	if err != nil {
		return err
	}
	ans.Placement = &placed
	s.m.sessions.Inc()
	s.log.InfoContext(ctx, "session created", "tenant", tenant, "session", x.ID, "clinician", clinician,
		"patient", req.PatientID, "relay", node.ID, "placed_by", placed.By, "kid", signer.KeyID(), "request_id", requestID(ctx))
	writeJSON(w, http.StatusCreated, ans)
	return nil
}

// mint signs a session token for each side of x — clinician and x's
// patient — and returns the answer that carries them. It refuses (409) a
// session that is over: no token is ever minted for one.
func (s *Server) mint(x pgstore.Session, clinician string, signer *token.Signer, dev *pgstore.Device, node pgstore.Node) (*sessionAnswer, error) {
	if sessionOver(x.State) {
		return nil, sessionEnded(x)
	}
	now := s.cfg.Now()
	base := token.Claims{Tenant: x.TenantID, Session: x.ID, IssuedAt: now.Unix(), Expiry: now.Add(s.cfg.SessionTokenTTL).Unix(), Relay: node.ID}
	if dev != nil {
		base.Device, base.Model = dev.Serial, dev.Model
	}
	ct, pt := base, base
	ct.Subject, ct.Role, ct.ID = clinician, token.RoleClinician, rand.Text()
	pt.Subject, pt.Role, pt.ID = x.PatientID, token.RolePatient, rand.Text()
	ctok, err := signer.Sign(ct)
	if err != nil {
		return nil, err
	}
	ptok, err := signer.Sign(pt)
	if err != nil {
		return nil, err
	}
	ans := &sessionAnswer{SessionID: x.ID, Mode: x.Mode, ClinicianToken: string(ctok), PatientToken: string(ptok),
		KeyID: signer.KeyID(), ExpiresAt: time.Unix(base.Expiry, 0).UTC(),
		Relay: relayView{ID: node.ID, Region: node.Region, WSURL: node.Addresses["ws"], QUICURL: node.Addresses["quic"]}}
	if dev != nil {
		v := viewDevice(*dev)
		ans.Device = &v
	}
	if ans.ICEServers, err = s.iceServers(x, node, ans.ExpiresAt); err != nil {
		return nil, err
	}
	return ans, nil
}

// assignedDevice returns the device serial names if it is assigned to
// patient (else 403 device_not_assigned), or nil for serial "".
func (s *Server) assignedDevice(r *http.Request, tenant, serial, patient string) (*pgstore.Device, error) {
	if serial == "" {
		return nil, nil
	}
	d, err := s.st.Device(r.Context(), tenant, serial)
	if err != nil && !errors.Is(err, pgstore.ErrNotFound) {
		return nil, s.storeError(r, "device", err)
	}
	if err != nil || d.PatientID != patient {
		return nil, forbidden("device_not_assigned", "the device is not assigned to the patient")
	}
	return &d, nil
}

// relayError answers a failure to find a relay for a session.
func (s *Server) relayError(r *http.Request, err error) error {
	if errors.Is(err, ErrNoRelay) {
		return errorf(http.StatusServiceUnavailable, "no_relay", "no live relay can take the session now; retry later")
	}
	return s.storeError(r, "relays", err)
}

// signer returns the key session tokens are signed with now; a failure
// is logged and answered 503.
func (s *Server) signer(ctx context.Context) (*token.Signer, error) {
	signer, err := s.keys.signer(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "no signing key", "err", err)
		return nil, unavailable
	}
	return signer, nil
}

// sessionEnded is the answer for a request that needs a session that is
// over.
func sessionEnded(x pgstore.Session) *apiError {
	return errorf(http.StatusConflict, "session_ended", "the session is %s; create a new session", x.State)
}

// nominalCapacity stands in for the capacity of a relay that reports none.
const nominalCapacity = 1000

// pickRelay returns the least-loaded live relay the tenant may use — a
// heartbeat within RelayLiveness, not draining, below its capacity, with
// a WebSocket address — in region if one is live there. Load is
// load/capacity. New sessions are placed by placeSession instead.
func (s *Server) pickRelay(ctx context.Context, tenant, region string) (pgstore.Node, error) {
	nodes, err := s.st.Nodes(ctx, tenant)
	if err != nil {
		return pgstore.Node{}, err
	}
	n, _, err := place(s.eligible(nodes, region, s.cfg.Now()), nil, nil)
	return n, err
}

// live reports whether n heartbeated recently and is not draining.
func (s *Server) live(n *pgstore.Node, now time.Time) bool {
	return n.LastHeartbeat != nil && now.Sub(*n.LastHeartbeat) <= s.cfg.RelayLiveness && !n.Draining
}
