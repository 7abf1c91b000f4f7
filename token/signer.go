package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// MaxTokenSize is the longest token Verify accepts, in bytes. Sign refuses
// to produce a longer one.
const MaxTokenSize = 4096

// b64 is base64url without padding, decoding strictly (RFC 7515 §2).
var b64 = base64.RawURLEncoding.Strict()

// header is the JOSE header of a session token.
type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// Signer mints session tokens with one Ed25519 private key. It is safe for
// concurrent use.
type Signer struct {
	kid    string
	priv   ed25519.PrivateKey
	header []byte // base64url of the encoded header, followed by '.'
}

// NewSigner returns a Signer that names its key kid in every token. kid must
// be 1..MaxIDLen bytes of printable text; priv must be a well-formed Ed25519
// private key (its embedded public half must match its seed). NewSigner
// keeps a copy of priv.
func NewSigner(kid string, priv ed25519.PrivateKey) (*Signer, error) {
	if err := checkKID(kid); err != nil {
		return nil, err
	}
	if err := checkPrivate(priv); err != nil {
		return nil, err
	}
	h, err := json.Marshal(header{Alg: "EdDSA", Typ: "JWT", Kid: kid})
	if err != nil {
		return nil, fmt.Errorf("token: encode header: %w", err)
	}
	return &Signer{
		kid:    kid,
		priv:   bytes.Clone(priv),
		header: append(b64.AppendEncode(nil, h), '.'),
	}, nil
}

// KeyID returns the key id the Signer writes into tokens.
func (s *Signer) KeyID() string { return s.kid }

// Public returns a copy of the Signer's public key.
func (s *Signer) Public() ed25519.PublicKey {
	return bytes.Clone(s.priv.Public().(ed25519.PublicKey))
}

// Sign validates c and returns it as a signed token. c.KeyID is ignored; the
// token names the Signer's key.
func (s *Signer) Sign(c Claims) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("token: sign: %w", err)
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("token: sign: encode claims: %w", err)
	}
	n := len(s.header) + b64.EncodedLen(len(body)) + 1 + b64.EncodedLen(ed25519.SignatureSize)
	if n > MaxTokenSize {
		return nil, fmt.Errorf("token: sign: %w: token would be longer than %d bytes", ErrClaims, MaxTokenSize)
	}
	tok := make([]byte, 0, n)
	tok = append(tok, s.header...)
	tok = b64.AppendEncode(tok, body)
	sig := ed25519.Sign(s.priv, tok)
	tok = append(tok, '.')
	tok = b64.AppendEncode(tok, sig)
	return tok, nil
}

// checkKID reports why kid cannot name a key.
func checkKID(kid string) error {
	if kid == "" {
		return fmt.Errorf("token: key id is empty")
	}
	if err := checkID(kid); err != nil {
		return fmt.Errorf("token: key id %v", err)
	}
	return nil
}

// checkPrivate reports why priv is not a usable Ed25519 private key.
func checkPrivate(priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("token: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	want := ed25519.NewKeyFromSeed(priv.Seed())
	if !bytes.Equal(want[ed25519.SeedSize:], priv[ed25519.SeedSize:]) {
		return fmt.Errorf("token: private key's public half does not match its seed")
	}
	return nil
}
