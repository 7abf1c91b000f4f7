package token

import "errors"

// Every error returned by Verify wraps exactly one of these, so callers can
// map a refusal to a protocol error code with errors.Is.
var (
	// ErrMalformed: the token is not a well-formed compact JWS of this
	// profile (too long, wrong number of parts, bad base64url, bad header,
	// an algorithm other than EdDSA, no kid).
	ErrMalformed = errors.New("token: malformed")
	// ErrUnknownKey: no key with the token's kid is configured.
	ErrUnknownKey = errors.New("token: unknown key id")
	// ErrRevoked: the token's kid has been revoked.
	ErrRevoked = errors.New("token: key revoked")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("token: bad signature")
	// ErrExpired: the token's exp has passed (beyond the leeway).
	ErrExpired = errors.New("token: expired")
	// ErrNotYetValid: the token's nbf lies in the future (beyond the leeway).
	ErrNotYetValid = errors.New("token: not yet valid")
	// ErrClaims: the signed claims are not a valid claim set (duplicate or
	// wrongly typed members, a required claim missing, a bad role, an id
	// too long).
	ErrClaims = errors.New("token: invalid claims")
	// ErrExists: a key file or key id that must be new already exists.
	ErrExists = errors.New("token: already exists")
)
