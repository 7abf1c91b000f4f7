package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// now is the clock every test verifies against.
var now = time.Unix(1_900_000_000, 0)

// Claim values carry a marker so tests can check that no error message
// ever quotes them.
const marker = "PHIMARK"

// testKey returns a deterministic key, so fuzz seeds and golden tokens stay
// stable.
func testKey(n byte) (kid string, priv ed25519.PrivateKey) {
	return fmt.Sprintf("test-%d", n), ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

func testSigner(t testing.TB, n byte) *Signer {
	t.Helper()
	kid, priv := testKey(n)
	s, err := NewSigner(kid, priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims() Claims {
	return Claims{
		Tenant:   "ten-" + marker,
		Subject:  "sub-" + marker,
		Role:     RoleClinician,
		Session:  "sid-" + marker,
		Device:   "dev-" + marker,
		Model:    "mdl-" + marker,
		Expiry:   now.Add(time.Hour).Unix(),
		IssuedAt: now.Unix(),
		ID:       "jti-" + marker,
	}
}

func mustSign(t testing.TB, s *Signer, c Claims) []byte {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw signs an arbitrary header and claim set, to build tokens Sign
// would refuse to make.
func signRaw(priv ed25519.PrivateKey, hdr, claims string) []byte {
	signed := enc(hdr) + "." + enc(claims)
	return []byte(signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(signed))))
}

func edHeader(kid string) string { return `{"alg":"EdDSA","typ":"JWT","kid":"` + kid + `"}` }

// sentinels are the errors Verify may wrap.
var sentinels = []error{ErrMalformed, ErrUnknownKey, ErrRevoked, ErrSignature, ErrExpired, ErrNotYetValid, ErrClaims}

// checkVerifyErr fails unless err wraps exactly one sentinel and says
// nothing about the token's content.
func checkVerifyErr(t testing.TB, err error, tok []byte) {
	t.Helper()
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("error %q wraps %d sentinels, want 1", err, n)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "token: ") {
		t.Errorf("error %q lacks the token: prefix", msg)
	}
	if strings.Contains(msg, marker) {
		t.Errorf("error %q quotes a claim value", msg)
	}
	for _, part := range bytes.Split(tok, []byte{'.'}) {
		if len(part) >= 8 && strings.Contains(msg, string(part)) {
			t.Errorf("error %q quotes the token", msg)
		}
	}
}

func edSign(priv []byte, msg string) []byte {
	return ed25519.Sign(ed25519.PrivateKey(priv), []byte(msg))
}
