package token

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"
)

// Keyring holds the public keys tokens are verified with, by key id. It is
// safe for concurrent use: Add, Revoke and Unrevoke may run while Verify
// runs, and a Verify that starts after Revoke returns refuses the key.
//
// Revocation is sticky: a revoked kid is refused with ErrRevoked, whether
// its key was added before or after Revoke, until Unrevoke. A kid can be
// revoked before its key is ever added, so a revocation list may be loaded
// ahead of the keys.
type Keyring struct {
	mu      sync.RWMutex // guards the fields below
	keys    map[string]ed25519.PublicKey
	revoked map[string]bool
}

// NewKeyring returns an empty Keyring. It verifies nothing until a key is
// added.
func NewKeyring() *Keyring {
	return &Keyring{
		keys:    make(map[string]ed25519.PublicKey),
		revoked: make(map[string]bool),
	}
}

// Add makes pub the key for kid. Adding the same key again is a no-op;
// a different key under a kid already held fails with ErrExists (rotate by
// adding a new kid, then revoking the old one). Add keeps a copy of pub.
func (k *Keyring) Add(kid string, pub ed25519.PublicKey) error {
	if err := checkKID(kid); err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("token: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.keys[kid]; ok {
		if bytes.Equal(old, pub) {
			return nil
		}
		return fmt.Errorf("token: key id %q: %w with a different key", kid, ErrExists)
	}
	k.keys[kid] = bytes.Clone(pub)
	return nil
}

// Revoke refuses tokens signed under kid from now on, until Unrevoke.
func (k *Keyring) Revoke(kid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.revoked[kid] = true
}

// Unrevoke lifts a revocation made by Revoke.
func (k *Keyring) Unrevoke(kid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.revoked, kid)
}

// KeyIDs returns the ids of the keys Verify currently accepts (added and
// not revoked), sorted.
func (k *Keyring) KeyIDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]string, 0, len(k.keys))
	for kid := range k.keys {
		if !k.revoked[kid] {
			ids = append(ids, kid)
		}
	}
	slices.Sort(ids)
	return ids
}

// lookup returns the key for kid, refusing unknown and revoked kids. The
// returned key is never modified, so it may be used after the lock is
// released.
func (k *Keyring) lookup(kid string) (ed25519.PublicKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.revoked[kid] {
		return nil, ErrRevoked
	}
	pub, ok := k.keys[kid]
	if !ok {
		return nil, ErrUnknownKey
	}
	return pub, nil
}
