package controlserver

import (
	"context"
	"net/http"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// Ending a session, and new tokens for a running one. A session that is
// over (ended through this API, or expired by the expire_sessions job)
// gets no new token; relays learn it from their heartbeat answer
// ("ended") and from GET /v1/relay/sessions/{tenant}/{session}
// (control.Directory.SessionEnded), and close it.

type sessionStateView struct {
	SessionID string     `json:"session_id"`
	TenantID  string     `json:"tenant_id"`
	State     string     `json:"state"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

func viewSessionState(x pgstore.Session) sessionStateView {
	return sessionStateView{SessionID: x.ID, TenantID: x.TenantID, State: x.State, EndedAt: x.EndedAt}
}

// clinicianSession returns the session id of the clinician's tenant if
// the clinician may act on it: they have its patient in care, or (only
// when admin is true) they are an admin of the tenant. A session of
// another tenant, or none, is 404; one whose patient is not in the
// clinician's care is 403, as for creating a session.
func (s *Server) clinicianSession(r *http.Request, a *clinicianAuth, id string, admin bool) (pgstore.Session, error) {
	ctx := r.Context()
	tenant := a.claims.Tenant
	x, err := s.st.Session(ctx, tenant, id)
	if err != nil {
		return x, s.storeError(r, "session", err)
	}
	if admin && a.clinician.Role == "admin" {
		return x, nil
	}
	inCare, err := s.st.InCare(ctx, tenant, a.claims.Clinician, x.PatientID)
	if err != nil {
		return x, s.storeError(r, "care relationship", err)
	}
	if !inCare {
		s.log.InfoContext(ctx, "session request refused: patient not in care", "tenant", tenant, "clinician", a.claims.Clinician,
			"session", x.ID, "request_id", requestID(ctx))
		return x, forbidden("not_in_care", "the patient of this session is not in your care")
	}
	return x, nil
}

// endSession ends a session for a clinician who has its patient in care,
// or an admin of the tenant.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request, a *clinicianAuth) error {
	x, err := s.clinicianSession(r, a, r.PathValue("id"), true)
	if err != nil {
		return err
	}
	return s.end(w, r, x, "clinician")
}

// operatorEndSession ends a session of a tenant for the operator.
func (s *Server) operatorEndSession(w http.ResponseWriter, r *http.Request) error {
	tenant, id := r.PathValue("tenant"), r.PathValue("session")
	x, err := s.st.Session(r.Context(), tenant, id)
	if err != nil {
		return s.storeError(r, "session", err)
	}
	return s.end(w, r, x, "operator")
}

// end marks x ended (a session over already stays as it is, so ending
// twice answers the same ended_at) and answers its state.
func (s *Server) end(w http.ResponseWriter, r *http.Request, x pgstore.Session, by string) error {
	ctx := r.Context()
	if !sessionOver(x.State) {
		var err error
		if x, err = s.st.EndSession(ctx, x.TenantID, x.ID); err != nil {
			return s.storeError(r, "session", err)
		}
		s.m.sessionsEnded.WithLabelValues(by).Inc()
		s.log.InfoContext(ctx, "session ended", "tenant", x.TenantID, "session", x.ID, "by", by, "request_id", requestID(ctx))
	}
	writeJSON(w, http.StatusOK, viewSessionState(x))
	return nil
}

// sessionTokens mints new tokens for both sides of a running session (the
// first ones expire after SessionTokenTTL) for a clinician who has its
// patient in care; the clinician token names that clinician. A session
// that is over is 409.
func (s *Server) sessionTokens(w http.ResponseWriter, r *http.Request, a *clinicianAuth) error {
	ctx := r.Context()
	x, err := s.clinicianSession(r, a, r.PathValue("id"), false)
	if err != nil {
		return err
	}
	if sessionOver(x.State) {
		return sessionEnded(x)
	}
	dev, err := s.assignedDevice(r, x.TenantID, x.DeviceSerial, x.PatientID)
	if err != nil {
		return err
	}
	node, err := s.sessionRelay(ctx, x)
	if err != nil {
		return s.relayError(r, err)
	}
	signer, err := s.signer(ctx)
	if err != nil {
		return err
	}
	ans, err := s.mint(x, a.claims.Clinician, signer, dev, node)
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "session tokens minted", "tenant", x.TenantID, "session", x.ID, "clinician", a.claims.Clinician,
		"relay", node.ID, "kid", signer.KeyID(), "request_id", requestID(ctx))
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// sessionRelay returns the relay x is on if it is live, else the relay
// pickRelay chooses (in the same region if one is live there).
func (s *Server) sessionRelay(ctx context.Context, x pgstore.Session) (pgstore.Node, error) {
	nodes, err := s.st.Nodes(ctx, x.TenantID)
	if err != nil {
		return pgstore.Node{}, err
	}
	region := ""
	now := s.cfg.Now()
	for i := range nodes {
		if n := &nodes[i]; n.ID == x.RelayNodeID {
			if s.live(n, now) && n.Addresses["ws"] != "" {
				return *n, nil
			}
			region = n.Region
		}
	}
	return s.pickRelay(ctx, x.TenantID, region)
}
