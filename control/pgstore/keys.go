package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKey is an Ed25519 token key as controld publishes it.
type SigningKey struct {
	TenantID  string // SystemTenant (default): deployment-wide
	KID       string
	PublicKey []byte // 32 bytes
	// PrivateSealed is nil when the private key lives only in controld's
	// key file, else the private key encrypted by controld (never
	// plaintext; pgstore does not interpret it).
	PrivateSealed []byte
	CreatedAt     time.Time
	RevokedAt     *time.Time
}

// AddSigningKey records a new key (ErrExists if its kid is taken).
func (s *Store) AddSigningKey(ctx context.Context, k SigningKey) (SigningKey, error) {
	if k.TenantID == "" {
		k.TenantID = SystemTenant
	}
	err := s.pool.QueryRow(ctx, `INSERT INTO signing_keys (tenant_id, kid, public_key, private_key_sealed)
		VALUES ($1, $2, $3, $4) RETURNING created_at`, k.TenantID, k.KID, k.PublicKey, k.PrivateSealed).Scan(&k.CreatedAt)
	return k, wrap("add signing key", err)
}

// RevokeSigningKey marks a key revoked (now); revoking twice keeps the
// first time.
func (s *Store) RevokeSigningKey(ctx context.Context, tenantID, kid string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE signing_keys SET revoked_at = coalesce(revoked_at, now())
		WHERE tenant_id = $1 AND kid = $2`, tenantID, kid)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	return wrap("revoke signing key", err)
}

// SigningKeys lists a tenant's keys, revoked ones included, oldest first.
func (s *Store) SigningKeys(ctx context.Context, tenantID string) ([]SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, kid, public_key, private_key_sealed, created_at, revoked_at
		FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid`, tenantID)
	if err != nil {
		return nil, wrap("list signing keys", err)
	}
	ks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SigningKey, error) {
		var k SigningKey
		err := r.Scan(&k.TenantID, &k.KID, &k.PublicKey, &k.PrivateSealed, &k.CreatedAt, &k.RevokedAt)
		return k, err
	})
	return ks, wrap("list signing keys", err)
}
