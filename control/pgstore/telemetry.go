package pgstore

import "context"

// EnsureTelemetryPartitions creates the monthly partitions of
// device_telemetry from last month to monthsAhead months after this one
// (UTC) that do not exist yet, and returns how many it created. controld
// runs it daily; telemetry outside every partition is refused.
func (s *Store) EnsureTelemetryPartitions(ctx context.Context, monthsAhead int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, "SELECT stapes_ensure_telemetry_partitions($1)", monthsAhead).Scan(&n)
	return n, wrap("ensure telemetry partitions", err)
}
