package controlserver

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/token"
)

// signingKey is one row of signing_keys.
type signingKey struct {
	kid     string
	pub     ed25519.PublicKey
	signer  *token.Signer // nil: no private half here (not sealed, or sealed under another secret)
	created time.Time
	revoked bool
}

// keyStore keeps the token signing keys: public halves and revocations for
// relays, and the sealed private halves controld signs with. Keys live in
// Postgres (signing_keys, tenant pgstore.SystemTenant), the private half
// sealed with AES-256-GCM under a key derived from Config.Secret, so every
// controld of a deployment signs with the same keys and a key made by one
// is used by all.
type keyStore struct {
	st   *pgstore.Store
	aead cipher.AEAD
	ttl  time.Duration
	now  func() time.Time
	log  *slog.Logger

	gen sync.Mutex // serialises key creation in this process

	mu     sync.Mutex // guards the fields below
	keys   []signingKey
	loaded time.Time
	warned map[string]bool // kids whose sealed half did not open, logged once
}

// sealVersion is the first byte of a sealed private key.
const sealVersion = 1

func newKeyStore(st *pgstore.Store, secret []byte, ttl time.Duration, now func() time.Time, log *slog.Logger) (*keyStore, error) {
	block, err := aes.NewCipher(deriveKey(secret, "signing-key-seal"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &keyStore{st: st, aead: aead, ttl: ttl, now: now, log: log, warned: map[string]bool{}}, nil
}

func sealAAD(kid string) []byte { return []byte(pgstore.SystemTenant + "/" + kid) }

func (k *keyStore) seal(kid string, priv ed25519.PrivateKey) []byte {
	out := make([]byte, 1+k.aead.NonceSize(), 1+k.aead.NonceSize()+ed25519.SeedSize+k.aead.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1:])
	return k.aead.Seal(out, out[1:], priv.Seed(), sealAAD(kid))
}

func (k *keyStore) unseal(kid string, sealed []byte) (ed25519.PrivateKey, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns || sealed[0] != sealVersion {
		return nil, ErrSealed
	}
	seed, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], sealAAD(kid))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, ErrSealed
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// list returns the keys, newest first, from the cache if it is fresh.
func (k *keyStore) list(ctx context.Context) ([]signingKey, error) {
	k.mu.Lock()
	if k.keys != nil && k.now().Sub(k.loaded) < k.ttl {
		keys := k.keys
		k.mu.Unlock()
		return keys, nil
	}
	k.mu.Unlock()
	return k.reload(ctx)
}

// reload reads the keys from Postgres.
func (k *keyStore) reload(ctx context.Context) ([]signingKey, error) {
	rows, err := k.st.SigningKeys(ctx, pgstore.SystemTenant)
	if err != nil {
		return nil, err
	}
	keys := make([]signingKey, 0, len(rows))
	for i := len(rows) - 1; i >= 0; i-- { // newest first
		row := &rows[i]
		key := signingKey{kid: row.KID, pub: ed25519.PublicKey(row.PublicKey), created: row.CreatedAt, revoked: row.RevokedAt != nil}
		if len(key.pub) != ed25519.PublicKeySize {
			k.log.Error("signing key with a malformed public key skipped", "kid", row.KID)
			continue
		}
		if row.PrivateSealed != nil && !key.revoked {
			key.signer = k.signerFor(key.kid, key.pub, row.PrivateSealed)
		}
		keys = append(keys, key)
	}
	k.mu.Lock()
	k.keys, k.loaded = keys, k.now()
	k.mu.Unlock()
	return keys, nil
}

// signerFor opens a sealed private key, or returns nil (logged once per
// kid) when it does not open or does not match its public half.
func (k *keyStore) signerFor(kid string, pub ed25519.PublicKey, sealed []byte) *token.Signer {
	priv, err := k.unseal(kid, sealed)
	if err == nil && !pub.Equal(priv.Public()) {
		err = fmt.Errorf("controlserver: private key of %s does not match its public key", kid)
	}
	var s *token.Signer
	if err == nil {
		s, err = token.NewSigner(kid, priv)
	}
	if err != nil {
		k.mu.Lock()
		first := !k.warned[kid]
		k.warned[kid] = true
		k.mu.Unlock()
		if first {
			k.log.Warn("signing key cannot sign here (sealed under another secret?)", "kid", kid, "err", err)
		}
		return nil
	}
	return s
}

// signer returns the newest key that is not revoked and whose private half
// opens here, creating one if there is none.
func (k *keyStore) signer(ctx context.Context) (*token.Signer, error) {
	keys, err := k.list(ctx)
	if err != nil {
		return nil, err
	}
	if s := newestSigner(keys); s != nil {
		return s, nil
	}
	k.gen.Lock()
	defer k.gen.Unlock()
	if keys, err = k.reload(ctx); err != nil { // another caller may have made one
		return nil, err
	}
	if s := newestSigner(keys); s != nil {
		return s, nil
	}
	if _, err := k.create(ctx); err != nil {
		return nil, err
	}
	if keys, err = k.reload(ctx); err != nil {
		return nil, err
	}
	if s := newestSigner(keys); s != nil {
		return s, nil
	}
	return nil, ErrNoSigningKey
}

func newestSigner(keys []signingKey) *token.Signer {
	for _, key := range keys {
		if !key.revoked && key.signer != nil {
			return key.signer
		}
	}
	return nil
}

// ensure makes sure a usable signing key exists (controld calls it at
// start) and returns its kid.
func (k *keyStore) ensure(ctx context.Context) (string, error) {
	s, err := k.signer(ctx)
	if err != nil {
		return "", err
	}
	return s.KeyID(), nil
}

// create makes a new key; being the newest, it signs from now on (on every
// controld once their cache expires). The older keys stay valid for the
// tokens they signed until they are revoked.
func (k *keyStore) create(ctx context.Context) (string, error) {
	kid, priv, err := token.GenerateKey(nil)
	if err != nil {
		return "", err
	}
	_, err = k.st.AddSigningKey(ctx, pgstore.SigningKey{TenantID: pgstore.SystemTenant, KID: kid,
		PublicKey: priv.Public().(ed25519.PublicKey), PrivateSealed: k.seal(kid, priv)})
	if err != nil {
		return "", err
	}
	k.invalidate()
	k.log.Info("signing key created", "kid", kid)
	return kid, nil
}

// revoke marks kid revoked; it reports false if there is no such key.
func (k *keyStore) revoke(ctx context.Context, kid string) (bool, error) {
	err := k.st.RevokeSigningKey(ctx, pgstore.SystemTenant, kid)
	k.invalidate()
	if errors.Is(err, pgstore.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	k.log.Info("signing key revoked", "kid", kid)
	return true, nil
}

func (k *keyStore) invalidate() {
	k.mu.Lock()
	k.keys = nil
	k.mu.Unlock()
}

// verify checks a session token minted by this deployment against the
// signing keys (revoked kids refused) and returns its claims.
func (k *keyStore) verify(ctx context.Context, tok []byte) (token.Claims, error) {
	keys, err := k.list(ctx)
	if err != nil {
		return token.Claims{}, err
	}
	ring := token.NewKeyring()
	for _, key := range keys {
		if err := ring.Add(key.kid, key.pub); err != nil {
			continue // a malformed kid cannot have signed anything
		}
		if key.revoked {
			ring.Revoke(key.kid)
		}
	}
	return ring.Verify(tok, k.now())
}
