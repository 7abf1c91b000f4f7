package token

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// GenerateKey creates an Ed25519 key pair from rand (nil: the system's
// secure source) and derives its key id: the hex of the first 8 bytes of
// SHA-256 over the public key, so the same key always gets the same kid.
func GenerateKey(rand io.Reader) (kid string, priv ed25519.PrivateKey, err error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return "", nil, fmt.Errorf("token: generate key: %w", err)
	}
	return KeyIDFor(pub), priv, nil
}

// KeyIDFor returns the default key id of pub, as GenerateKey derives it.
func KeyIDFor(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
