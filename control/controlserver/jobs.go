package controlserver

import (
	"context"
	"time"
)

// partitionInterval is how often RunJobs makes sure the telemetry
// partitions of the coming months exist.
const partitionInterval = 24 * time.Hour

// partitionMonthsAhead is how many months of telemetry partitions are
// created ahead.
const partitionMonthsAhead = 3

// RunJobs runs controld's periodic jobs until ctx ends: today, creating
// the monthly device_telemetry partitions ahead (at start, then daily;
// failures are logged and retried at the next tick). It returns ctx's
// error.
func (s *Server) RunJobs(ctx context.Context) error {
	t := time.NewTicker(partitionInterval)
	defer t.Stop()
	for {
		n, err := s.st.EnsureTelemetryPartitions(ctx, partitionMonthsAhead)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "creating telemetry partitions failed; retrying later", "err", err)
		case n > 0:
			s.log.InfoContext(ctx, "telemetry partitions created", "count", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
