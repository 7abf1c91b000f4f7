package controlserver

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/token"
)

// Push registrations: a patient's app registers the push token (APNs,
// FCM) or webhook URL that wakes it when a Standard-mode command is
// queued for it. The app authenticates with a patient session token
// minted by controld (Authorization: Bearer <token>): its signature is
// checked against the signing keys (a revoked kid is refused), its role
// must be patient, its session must not be over, and the registration
// belongs to its tenant and subject. The push token is a secret: never
// logged, and answered only as a fingerprint (the first 12 hex digits of
// its SHA-256) so the app can check what is registered.

// maxPushToken bounds a push token or webhook URL, bytes.
const maxPushToken = 4096

// patientAuth is the patient a request acts for.
type patientAuth struct {
	claims token.Claims
}

// asPatient admits requests bearing a valid patient session token of a
// session that is not over.
func (s *Server) asPatient(h func(http.ResponseWriter, *http.Request, *patientAuth) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok := bearer(r)
		if tok == "" {
			return unauthorized("a patient session token is required: Authorization: Bearer <patient token>")
		}
		c, err := s.keys.verify(r.Context(), []byte(tok))
		switch {
		case errors.Is(err, token.ErrExpired):
			return unauthorized("the session token has expired; ask for a new one")
		case errors.Is(err, token.ErrRevoked), errors.Is(err, token.ErrUnknownKey), errors.Is(err, token.ErrSignature),
			errors.Is(err, token.ErrMalformed), errors.Is(err, token.ErrClaims), errors.Is(err, token.ErrNotYetValid):
			return unauthorized("the bearer token is not a valid session token of this deployment")
		case err != nil:
			s.log.ErrorContext(r.Context(), "loading signing keys failed", "err", err)
			return unavailable
		case c.Role != token.RolePatient:
			return forbidden("not_patient", "this endpoint takes a patient's session token")
		}
		x, err := s.st.Session(r.Context(), c.Tenant, c.Session)
		switch {
		case errors.Is(err, pgstore.ErrNotFound):
			return unauthorized("the session of this token does not exist")
		case err != nil:
			return s.storeError(r, "session", err)
		case x.PatientID != c.Subject:
			return unauthorized("the session of this token is another patient's")
		case sessionOver(x.State):
			return unauthorized("the session of this token is %s; use a token of a running session", x.State)
		}
		return h(w, r, &patientAuth{claims: c})
	}
}

type pushView struct {
	InstallationID   string    `json:"installation_id"`
	Provider         string    `json:"provider"`
	TokenFingerprint string    `json:"token_fingerprint"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func viewPush(p pgstore.PushRegistration) pushView {
	sum := sha256.Sum256([]byte(p.Token))
	return pushView{InstallationID: p.InstallationID, Provider: p.Provider, TokenFingerprint: "sha256:" + hex.EncodeToString(sum[:6]),
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
}

// checkPushToken reports (as a 400, never quoting it) why tok is not a
// push token of provider.
func checkPushToken(provider, tok string) error {
	switch provider {
	case pgstore.PushWebhook, pgstore.PushAPNs, pgstore.PushFCM:
	case "":
		return badRequest("provider is required (webhook, apns or fcm)")
	default:
		return badRequest("provider must be webhook, apns or fcm")
	}
	switch {
	case tok == "":
		return badRequest("push_token is required")
	case len(tok) > maxPushToken:
		return badRequest("push_token is longer than %d bytes", maxPushToken)
	}
	for _, c := range []byte(tok) {
		if c <= 0x20 || c == 0x7f {
			return badRequest("push_token contains spaces or control characters")
		}
	}
	if provider == pgstore.PushWebhook {
		if u, err := url.Parse(tok); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return badRequest("a webhook push_token must be an https:// URL without user info")
		}
	}
	return nil
}

// putPush registers (or replaces) the push token of one installation of
// the patient's app.
func (s *Server) putPush(w http.ResponseWriter, r *http.Request, a *patientAuth) error {
	inst := r.PathValue("installation")
	if err := checkID("installation id", inst); err != nil {
		return err
	}
	var req struct {
		Provider  string `json:"provider"`
		PushToken string `json:"push_token"`
	}
	if err := decodeJSON(w, r, s.cfg.MaxJSONBody, &req); err != nil {
		return err
	}
	req.Provider = strings.ToLower(req.Provider)
	if err := checkPushToken(req.Provider, req.PushToken); err != nil {
		return err
	}
	p, err := s.st.PutPushRegistration(r.Context(), pgstore.PushRegistration{TenantID: a.claims.Tenant, PatientID: a.claims.Subject,
		InstallationID: inst, Provider: req.Provider, Token: req.PushToken})
	if err != nil {
		return s.storeError(r, "push registration (or its patient)", err)
	}
	s.log.InfoContext(r.Context(), "push registration stored", "tenant", a.claims.Tenant, "patient", a.claims.Subject,
		"provider", p.Provider, "request_id", requestID(r.Context()))
	writeJSON(w, http.StatusOK, viewPush(p))
	return nil
}

// deletePush removes one installation's registration.
func (s *Server) deletePush(w http.ResponseWriter, r *http.Request, a *patientAuth) error {
	if err := s.st.DeletePushRegistration(r.Context(), a.claims.Tenant, a.claims.Subject, r.PathValue("installation")); err != nil {
		return s.storeError(r, "push registration", err)
	}
	s.log.InfoContext(r.Context(), "push registration removed", "tenant", a.claims.Tenant, "patient", a.claims.Subject,
		"request_id", requestID(r.Context()))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listPush answers the patient's registrations (fingerprints, never the
// tokens).
func (s *Server) listPush(w http.ResponseWriter, r *http.Request, a *patientAuth) error {
	ps, err := s.st.PushRegistrations(r.Context(), a.claims.Tenant, a.claims.Subject)
	if err != nil {
		return s.storeError(r, "push registrations", err)
	}
	out := make([]pushView, 0, len(ps))
	for _, p := range ps {
		out = append(out, viewPush(p))
	}
	writeJSON(w, http.StatusOK, map[string]any{"registrations": out})
	return nil
}
