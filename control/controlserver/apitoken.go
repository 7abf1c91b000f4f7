package controlserver

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Clinicians' API tokens are signed, not stored: the schema has no table
// for API sessions, and a signed token lets any controld of the
// deployment (same Secret) check it without a round trip. Format:
//
//	"sta1." base64url(JSON claims) "." base64url(HMAC-SHA256(key, "sta1." base64url(claims)))
//
// Every request that presents one also reads the clinician's row
// (disabled clinicians and changed passwords end their tokens at once:
// the claims carry a fingerprint of the password hash). Logout denies the
// token's id in memory until it expires; with several controlds behind a
// load balancer a logged-out token stays valid on the others until it
// expires (a table of API sessions in pgstore would fix that).
const apiTokenPrefix = "sta1."

// apiClaims are the claims of a clinician's API token.
type apiClaims struct {
	Tenant    string `json:"ten"`
	Clinician string `json:"sub"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	ID        string `json:"jti"`
	// PasswordTag is a short fingerprint of the password hash the token
	// was issued under: a password change ends every older token.
	PasswordTag string `json:"pwt"`
}

var b64 = base64.RawURLEncoding

// deriveKey derives a purpose-bound key from the server secret.
func deriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("stapes controld key v1\x00" + purpose))
	return m.Sum(nil)
}

// passwordTag fingerprints a password hash (never the password).
func passwordTag(hash string) string {
	sum := sha256.Sum256([]byte(hash))
	return b64.EncodeToString(sum[:9])
}

// apiTokens signs and checks API tokens.
type apiTokens struct {
	key []byte

	mu     sync.Mutex // guards denied
	denied map[string]int64
}

func newAPITokens(secret []byte) *apiTokens {
	return &apiTokens{key: deriveKey(secret, "api-token"), denied: map[string]int64{}}
}

func (a *apiTokens) mac(signed string) []byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// issue returns a token for c, filling its id.
func (a *apiTokens) issue(c *apiClaims) (string, error) {
	c.ID = rand.Text()
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signed := apiTokenPrefix + b64.EncodeToString(body)
	return signed + "." + b64.EncodeToString(a.mac(signed)), nil
}

// check verifies tok's MAC, then its expiry and denial, and returns its
// claims. Errors wrap ErrBadToken and never quote the token.
func (a *apiTokens) check(tok string, now time.Time) (apiClaims, error) {
	var c apiClaims
	if len(tok) > 2048 || !strings.HasPrefix(tok, apiTokenPrefix) {
		return c, fmt.Errorf("%w: not an API token", ErrBadToken)
	}
	dot := strings.LastIndexByte(tok, '.')
	if dot <= len(apiTokenPrefix) {
		return c, fmt.Errorf("%w: malformed", ErrBadToken)
	}
	sig, err := b64.DecodeString(tok[dot+1:])
	if err != nil || !hmac.Equal(sig, a.mac(tok[:dot])) {
		return c, fmt.Errorf("%w: bad signature", ErrBadToken)
	}
	body, err := b64.DecodeString(tok[len(apiTokenPrefix):dot])
	if err != nil {
		return c, fmt.Errorf("%w: malformed", ErrBadToken)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Tenant == "" || c.Clinician == "" || c.ID == "" {
		return apiClaims{}, fmt.Errorf("%w: malformed claims", ErrBadToken)
	}
	if now.Unix() >= c.Expiry {
		return apiClaims{}, fmt.Errorf("%w: expired", ErrBadToken)
	}
	a.mu.Lock()
	_, denied := a.denied[c.ID]
	a.mu.Unlock()
	if denied {
		return apiClaims{}, fmt.Errorf("%w: logged out", ErrBadToken)
	}
	return c, nil
}

// deny refuses the token c from now until it expires, and forgets denied
// tokens that have expired.
func (a *apiTokens) deny(c apiClaims, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, exp := range a.denied {
		if exp <= now.Unix() {
			delete(a.denied, id)
		}
	}
	a.denied[c.ID] = c.Expiry
}
