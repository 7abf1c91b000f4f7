package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Node is a relay.
type Node struct {
	TenantID       string // SystemTenant (default) for shared relays
	ID             string
	Region         string
	Addresses      map[string]string // public address by transport ("ws", "quic", "turn", …)
	CredentialHash string            // hash of the node credential; secret
	Version        string            // software and protocol version
	Capacity       int               // sessions it is sized for
	Load           int               // sessions it holds
	Draining       bool
	RegisteredAt   time.Time
	LastHeartbeat  *time.Time // nil until the first heartbeat
}

// Heartbeat is what a relay reports periodically.
type Heartbeat struct {
	Load      int
	Draining  bool
	Addresses map[string]string // nil: unchanged
}

const nodeCols = `tenant_id, node_id, region, addresses, credential_hash, version, capacity, load,
	draining, registered_at, last_heartbeat`

func scanNode(row pgx.Row) (Node, error) {
	var n Node
	err := row.Scan(&n.TenantID, &n.ID, &n.Region, &n.Addresses, &n.CredentialHash, &n.Version,
		&n.Capacity, &n.Load, &n.Draining, &n.RegisteredAt, &n.LastHeartbeat)
	return n, err
}

// RegisterNode adds a relay or, if it exists, replaces its region,
// addresses, credential hash, version and capacity (its load, draining
// flag and heartbeat are kept). The caller has authenticated the relay.
func (s *Store) RegisterNode(ctx context.Context, n Node) (Node, error) {
	if n.TenantID == "" {
		n.TenantID = SystemTenant
	}
	if n.Addresses == nil {
		n.Addresses = map[string]string{}
	}
	out, err := scanNode(s.pool.QueryRow(ctx, `INSERT INTO nodes
			(tenant_id, node_id, region, addresses, credential_hash, version, capacity)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (tenant_id, node_id) DO UPDATE SET
			region = EXCLUDED.region, addresses = EXCLUDED.addresses,
			credential_hash = EXCLUDED.credential_hash, version = EXCLUDED.version,
			capacity = EXCLUDED.capacity
		RETURNING `+nodeCols,
		n.TenantID, n.ID, n.Region, n.Addresses, n.CredentialHash, n.Version, n.Capacity))
	return out, wrap("register node", err)
}

// Node returns one relay.
func (s *Store) Node(ctx context.Context, tenantID, id string) (Node, error) {
	n, err := scanNode(s.pool.QueryRow(ctx, "SELECT "+nodeCols+" FROM nodes WHERE tenant_id = $1 AND node_id = $2", tenantID, id))
	return n, wrap("get node", err)
}

// HeartbeatNode records a relay's heartbeat at the server's clock and
// returns the updated node. ErrNotFound if it never registered.
func (s *Store) HeartbeatNode(ctx context.Context, tenantID, id string, hb Heartbeat) (Node, error) {
	var addrs any // SQL NULL (keep) unless given
	if hb.Addresses != nil {
		addrs = hb.Addresses
	}
	n, err := scanNode(s.pool.QueryRow(ctx, `UPDATE nodes SET
			load = $3, draining = $4, addresses = coalesce($5::jsonb, addresses), last_heartbeat = now()
		WHERE tenant_id = $1 AND node_id = $2
		RETURNING `+nodeCols, tenantID, id, hb.Load, hb.Draining, addrs))
	return n, wrap("heartbeat node", err)
}

// Nodes lists the relays a tenant may use — the shared ones
// (SystemTenant) and its own — by region then id. tenantID ""
// lists every relay of the deployment.
func (s *Store) Nodes(ctx context.Context, tenantID string) ([]Node, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+nodeCols+` FROM nodes
		WHERE $1 = '' OR tenant_id IN ($1, '`+SystemTenant+`') ORDER BY region, node_id, tenant_id`, tenantID)
	if err != nil {
		return nil, wrap("list nodes", err)
	}
	ns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Node, error) { return scanNode(r) })
	return ns, wrap("list nodes", err)
}
