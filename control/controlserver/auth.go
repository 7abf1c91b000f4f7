package controlserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// bearer returns the request's bearer token, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// clinicianAuth is the clinician a request acts for.
type clinicianAuth struct {
	claims    apiClaims
	clinician pgstore.Clinician
}

// asClinician admits requests with a valid API token of a clinician who is
// not disabled and has not changed their password since.
func (s *Server) asClinician(h func(http.ResponseWriter, *http.Request, *clinicianAuth) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		tok := bearer(r)
		if tok == "" {
			return unauthorized("an API token is required: Authorization: Bearer <token from POST /v1/login>")
		}
		c, err := s.tokens.check(tok, s.cfg.Now())
		if err != nil {
			return unauthorized("the API token is not valid (%s); log in again", strings.TrimPrefix(err.Error(), ErrBadToken.Error()+": "))
		}
		cl, err := s.st.Clinician(r.Context(), c.Tenant, c.Clinician)
		switch {
		case errors.Is(err, pgstore.ErrNotFound):
			return unauthorized("the account of this API token no longer exists")
		case err != nil:
			return s.storeError(r, "clinician", err)
		case cl.DisabledAt != nil:
			return unauthorized("the account of this API token is disabled")
		case subtle.ConstantTimeCompare([]byte(passwordTag(cl.PasswordHash)), []byte(c.PasswordTag)) != 1:
			return unauthorized("the password changed since this API token was issued; log in again")
		}
		return h(w, r, &clinicianAuth{claims: c, clinician: cl})
	}
}

// asOperator admits requests bearing Config.OperatorToken.
func (s *Server) asOperator(h handlerFunc) handlerFunc {
	want := sha256.Sum256([]byte(s.cfg.OperatorToken))
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.cfg.OperatorToken == "" {
			return unauthorized("the operator API is disabled: controld runs without an operator token")
		}
		tok := bearer(r)
		if tok == "" {
			return unauthorized("the operator token is required: Authorization: Bearer <operator token>")
		}
		got := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			s.log.WarnContext(r.Context(), "operator API refused: wrong operator token", "request_id", requestID(r.Context()))
			return unauthorized("the operator token is wrong")
		}
		return h(w, r)
	}
}

// Node credentials: "snc1." base64url(tenant) "." base64url(node id) "."
// base64url(32 random bytes). Postgres keeps "sha256:" hex(SHA-256(secret
// bytes)): the secret is random, so a fast hash is enough. The ids in the
// credential only find the row; the secret is compared in constant time.
const nodeCredPrefix = "snc1."

func newNodeCredential(tenant, node string) (cred, hash string) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cred = nodeCredPrefix + b64.EncodeToString([]byte(tenant)) + "." + b64.EncodeToString([]byte(node)) + "." + b64.EncodeToString(secret)
	return cred, credentialHash(secret)
}

func credentialHash(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// parseNodeCredential splits a credential; ok is false if it is not one.
func parseNodeCredential(cred string) (tenant, node string, secret []byte, ok bool) {
	rest, found := strings.CutPrefix(cred, nodeCredPrefix)
	parts := strings.Split(rest, ".")
	if !found || len(parts) != 3 || len(cred) > 1024 {
		return "", "", nil, false
	}
	t, err1 := b64.DecodeString(parts[0])
	n, err2 := b64.DecodeString(parts[1])
	sec, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(t) == 0 || len(n) == 0 || len(sec) != 32 {
		return "", "", nil, false
	}
	return string(t), string(n), sec, true
}

// asRelay admits requests bearing a relay's node credential.
func (s *Server) asRelay(h func(http.ResponseWriter, *http.Request, *pgstore.Node) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cred := bearer(r)
		if cred == "" {
			return unauthorized("a node credential is required: Authorization: Bearer <node credential>")
		}
		tenant, id, secret, ok := parseNodeCredential(cred)
		if !ok {
			return unauthorized("the bearer token is not a node credential")
		}
		n, err := s.st.Node(r.Context(), tenant, id)
		if errors.Is(err, pgstore.ErrNotFound) {
			return unauthorized("the node credential is not valid")
		} else if err != nil {
			return s.storeError(r, "relay", err)
		}
		if subtle.ConstantTimeCompare([]byte(credentialHash(secret)), []byte(n.CredentialHash)) != 1 {
			s.log.WarnContext(r.Context(), "relay API refused: wrong node credential", "node", id, "request_id", requestID(r.Context()))
			return unauthorized("the node credential is not valid")
		}
		return h(w, r, &n)
	}
}
