package token

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Leeway is the clock skew Verify tolerates on exp and nbf.
const Leeway = 30 * time.Second

// Reasons a token is malformed. They read after the part's name and never
// quote the token.
var (
	errEmpty  = errors.New("is empty")
	errBase64 = errors.New("is not base64url")
	errAlg    = errors.New("alg is not EdDSA")
	errNoKID  = errors.New("has no kid")
	errBadKID = errors.New("kid is not a valid key id")
	errTyp    = errors.New("typ is not JWT")
	errCrit   = errors.New("has crit, which is not supported")
)

// Verify checks tok and returns its claims, with KeyID set from the header.
// The checks run in this order, and the first failure is returned wrapping
// one of the package's sentinel errors:
//
//  1. size: at most MaxTokenSize bytes (ErrMalformed)
//  2. exactly three non-empty base64url parts (ErrMalformed)
//  3. header: a JSON object with alg "EdDSA", a kid, typ "JWT" if present,
//     no crit (ErrMalformed)
//  4. kid known (ErrUnknownKey) and not revoked (ErrRevoked)
//  5. the Ed25519 signature over the first two parts (ErrSignature)
//  6. only then the claims: strict JSON (ErrClaims) and Validate (ErrClaims)
//  7. exp and nbf against now, with Leeway (ErrExpired, ErrNotYetValid)
//
// A token is expired once now >= exp + Leeway, and not yet valid while
// now < nbf - Leeway. Header members other than alg, typ, kid and crit
// (jku, jwk, x5u, ...) are ignored: keys come only from the Keyring.
func (k *Keyring) Verify(tok []byte, now time.Time) (Claims, error) {
	if len(tok) > MaxTokenSize {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	h64, rest, ok1 := bytes.Cut(tok, []byte{'.'})
	c64, s64, ok2 := bytes.Cut(rest, []byte{'.'})
	if !ok1 || !ok2 || bytes.IndexByte(s64, '.') >= 0 {
		return Claims{}, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	hdr, err := decodePart(h64)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: header %v", ErrMalformed, err)
	}
	kid, err := parseHeader(hdr)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: header %v", ErrMalformed, err)
	}
	sig, err := decodePart(s64)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: signature %v", ErrMalformed, err)
	}
	pub, err := k.lookup(kid)
	if err != nil {
		return Claims{}, err
	}
	signed := tok[:len(h64)+1+len(c64)]
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, signed, sig) {
		return Claims{}, ErrSignature
	}

	// The claims are authentic from here on.
	body, err := decodePart(c64)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: claims %v", ErrMalformed, err)
	}
	c, err := decodeClaims(body)
	if err != nil {
		return Claims{}, err
	}
	if err := c.Validate(); err != nil {
		return Claims{}, err
	}
	t, leeway := now.Unix(), int64(Leeway/time.Second)
	if t-leeway >= c.Expiry {
		return Claims{}, ErrExpired
	}
	if c.NotBefore != 0 && t+leeway < c.NotBefore {
		return Claims{}, ErrNotYetValid
	}
	c.KeyID = kid
	return c, nil
}

// decodePart decodes one base64url part. Only the 64 alphabet characters
// are allowed (the decoder alone would skip CR and LF, so one token could
// be written several ways), padding bits must be zero, and a part is never
// empty.
func decodePart(p []byte) ([]byte, error) {
	if len(p) == 0 {
		return nil, errEmpty
	}
	for _, c := range p {
		if !isB64URL(c) {
			return nil, errBase64
		}
	}
	out, err := b64.DecodeString(string(p))
	if err != nil {
		return nil, errBase64
	}
	return out, nil
}

func isB64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// parseHeader checks a decoded JOSE header and returns its kid. It is as
// strict as decodeClaims: one object, no duplicate members, right types.
func parseHeader(data []byte) (string, error) {
	members, err := decodeObject(data)
	if err != nil {
		return "", err
	}
	var h header
	for _, f := range []struct {
		name string
		dst  *string
	}{{"alg", &h.Alg}, {"typ", &h.Typ}, {"kid", &h.Kid}} {
		raw, ok := members[f.name]
		if !ok {
			continue
		}
		if err := decodeMember(raw, f.dst); err != nil {
			return "", fmt.Errorf("%s %v", f.name, err)
		}
	}
	switch {
	case h.Alg != "EdDSA":
		return "", errAlg
	case h.Kid == "":
		return "", errNoKID
	case checkID(h.Kid) != nil:
		return "", errBadKID
	case h.Typ != "" && !strings.EqualFold(h.Typ, "JWT"):
		return "", errTyp
	}
	// RFC 7515 §4.1.11: a recipient must refuse extensions it does not
	// understand, and this profile understands none.
	if _, ok := members["crit"]; ok {
		return "", errCrit
	}
	return h.Kid, nil
}
