package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/stapes-relay/stapes/bench"
)

// The sync scenario's fixed load (issue 5's goal).
const (
	syncRate           = 2000 // durable messages per second in the steady run
	syncSteadySessions = 20
	syncFillSessions   = 16
)

func init() {
	register(&Scenario{
		Name:  "sync",
		Title: "relay outbox → controld → Postgres vs raw pgx CopyFrom",
		Summary: "A relay (in the harness process, WebSocket over TLS, Pebble store) gets a pre-filled outbox: clinicians " +
			"send durable 160-byte messages pipelined over 16 sessions and patients ACK each one, so every message is two " +
			"log entries (DELIVER, RECEIPT). With nothing syncing meanwhile, control.Syncer (relayd's defaults: 5,000 " +
			"entries per batch) then ships the whole outbox to controld (its API in the harness process, plain HTTP on " +
			"loopback) over a private PostgreSQL (the system's binaries, fsync on), which verifies the audit chains and " +
			"stores one audit_log row per entry plus a messages or receipts row. Rows/s counts all three. Baseline in the " +
			"same repeat: the same rows, read back, written with plain pgx CopyFrom into tables LIKE the real ones " +
			"(same columns, key and indexes) on the same pool, in the same batches and row order. Then every batch is posted again " +
			"(replay: must insert 0 rows), and the rows in Postgres are counted (exactly once). Last, a steady open-loop " +
			"load of 2,000 durable messages/s (ACKed) over 20 sessions runs while the syncer runs as in relayd; the sync " +
			"lag of each message is the time from its PERSISTED at the sender to controld confirming its batch.",
		Default: true,
		Plan:    syncPlan,
		Run:     runSync,
	})
}

func syncSteadyDuration(o Options) time.Duration { return o.Duration * 5 / 2 }

func syncFillPlan(o Options) time.Duration {
	return time.Duration(o.SyncEntries) * 40 * time.Microsecond // about 25k entries/s
}

func syncPlan(o Options) time.Duration {
	per := syncFillPlan(o) + time.Duration(o.SyncEntries)*40*time.Microsecond + syncSteadyDuration(o) + 1500*time.Millisecond
	return time.Duration(o.Repeat)*per + 3*time.Second
}

func runSync(ctx context.Context, e *Env, o Options, res *bench.ScenarioResult) error {
	done := step(e, "sync: start PostgreSQL and controld", 5*time.Second)
	s, err := startSyncStack(ctx, e)
	done()
	if err != nil {
		return err
	}
	defer s.Close()
	rate := rateLabel(syncRate)
	load := fmt.Sprintf("outbox of %d entries", o.SyncEntries)
	runs := []*bench.Run{
		res.AddRun("sync", "relay outbox → control.Syncer → controld → Postgres", load+"; p50/p99/max: batch POST round trip", true),
		res.AddRun("copyfrom", "raw pgx CopyFrom, plain tables", "the same rows in the same batches; p50/p99/max: per batch", false),
		res.AddRun("replay", "the same batches posted again", load+"; p50/p99/max: batch POST round trip", true),
		res.AddRun("steady-"+rate, "relay + control.Syncer (relayd defaults) under load",
			fmt.Sprintf("open loop %d durable msg/s + ACKs, %d sessions, %s; p50/p99/max: batch POST round trip", syncRate, syncSteadySessions,
				syncSteadyDuration(o)), true),
	}
	for rep := range o.Repeat {
		if err := syncRepeat(ctx, e, s, o, res.Name, rep, runs); errCanceled(ctx, err) {
			return err
		}
	}
	syncChecks(res)
	syncPlots(res)
	res.Notes = append(res.Notes,
		"Rows/s of the sync is measured from the first batch the syncer reads from Pebble to controld's answer to the last: it includes reading the outbox, encoding, HTTP, decoding, audit-chain verification and the three COPYs per batch. The baseline is only the COPYs.",
		"controld stores a batch with a plain COPY into the target table when none of its keys is stored yet, and falls back to COPY into a staging table + INSERT … ON CONFLICT DO NOTHING when one is (the replay). Replay rows/s is the rate at which batches were offered again.",
		"Batch commit = the syncer's POST round trip (controld's handling plus loopback HTTP). Draining a backlog, batches are 5,000 entries (10,000 rows): about ten per repeat, so their p99 is close to their max.",
		"Sync lag counts entries the syncer shipped before their PERSISTED was read as 0; messages never confirmed within "+syncConfirmWait.String()+" after the load are counted at the lag they had reached ('unconfirmed'). The syncer ships batch after batch while there is a backlog and polls an idle outbox every 100 ms (relayd's default).",
		"Exactly once under load: after the steady run the clients leave, the relay goes quiet and the syncer catches up; then Postgres must hold two rows (audit + message or receipt) per entry the relay committed for those sessions. Entries whose audit chain controld flags as broken are kept in audit_log flagged and not counted.",
		"syncer_us_per_batch (results.json) is the syncer's own time per batch outside the POST (reading outbox and log from Pebble, encoding, acknowledging); fill_entries_per_s is how fast the relay committed the pre-filled outbox (pipelined durable SENDs and ACKs).",
		"Everything but PostgreSQL runs in the harness process: relay, clients, syncer, controld and the baseline's pgx; CPU 'postgres' is the postmaster and its backends.",
		"The baseline runs after the sync in every repeat (it needs the sync's rows); both add the same number of rows to tables of the same shape in every repeat.",
	)
	return nil
}

// syncRepeat runs one repeat: a fresh relay, fill, drain, baseline,
// replay, then the steady run. A failed step fails the runs after it.
func syncRepeat(ctx context.Context, e *Env, s *syncStack, o Options, name string, rep int, runs []*bench.Run) error {
	stepName := func(what string) string { return fmt.Sprintf("%s %s r%d/%d", name, what, rep+1, o.Repeat) }
	next := 0
	fail := func(err error) error {
		for _, r := range runs[next:] {
			r.Add(nil, err)
		}
		return err
	}
	r, err := startSyncRelay(e, s.log)
	if err != nil {
		return fail(err)
	}
	defer r.Close()

	done := step(e, stepName("fill"), syncFillPlan(o))
	t0 := time.Now()
	sessions, entries, err := fillOutbox(ctx, e, r, o.SyncEntries, syncFillSessions)
	fill := time.Since(t0)
	done()
	if err != nil {
		return fail(err)
	}
	done = step(e, stepName("drain"), time.Duration(o.SyncEntries)*10*time.Microsecond)
	m, tap, err := drainOutbox(ctx, s, r)
	done()
	if err != nil {
		return fail(err)
	}
	m["entries"] = float64(entries)
	m["fill_entries_per_s"] = float64(entries) / fill.Seconds()
	runs[0].Add(m, nil)
	next++

	done = step(e, stepName("copyfrom"), time.Duration(o.SyncEntries)*15*time.Microsecond)
	m, err = copyBaseline(ctx, s, sessions, tap.batches)
	done()
	runs[1].Add(m, err)
	next++

	done = step(e, stepName("replay"), time.Duration(o.SyncEntries)*15*time.Microsecond)
	m, err = replayBatches(ctx, s, tap.batches)
	if err == nil {
		var stored int64
		if stored, err = storedRows(ctx, s, sessions); err == nil {
			// Every entry is one audit row and one message or receipt.
			m["rows_diff"] = float64(stored - 2*int64(entries))
		}
	}
	done()
	if err != nil {
		return fail(err)
	}
	runs[2].Add(m, nil)
	next++

	done = step(e, stepName("steady"), syncSteadyDuration(o)+time.Second)
	m, err = steadySync(ctx, e, s, r, syncRate, syncSteadyDuration(o), syncSteadySessions)
	done()
	runs[3].Add(m, err)
	return err
}

func syncChecks(res *bench.ScenarioResult) {
	rate := rateLabel(syncRate)
	steady := "steady-" + rate
	batchGoal := bench.Goal{Op: "<=", Target: 100_000, Unit: "µs"}
	res.Checks = append(res.Checks,
		bench.Check{Name: "rows/s, outbox → Postgres vs raw pgx CopyFrom", Metric: "throughput_per_s", Ours: "sync", Baseline: "copyfrom",
			Goal: bench.Goal{Op: ">=", Target: 0.8, Unit: "×"}},
		bench.Check{Name: "batch commit p99 @" + rate + " msg/s", Metric: "p99_us", Ours: steady, Goal: batchGoal},
		bench.Check{Name: "batch commit p99, draining (5,000-entry batches)", Metric: "p99_us", Ours: "sync", Goal: batchGoal},
		bench.Check{Name: "replayed batches: rows inserted", Metric: "rows_inserted", Ours: "replay", Goal: bench.Goal{Op: "==", Unit: "rows"}},
		bench.Check{Name: "exactly once: rows in Postgres − 2 × entries committed (after sync and replay)", Metric: "rows_diff", Ours: "replay",
			Goal: bench.Goal{Op: "==", Unit: "rows"}},
		bench.Check{Name: "audit chains flagged broken, draining", Metric: "broken_sessions", Ours: "sync", Goal: bench.Goal{Op: "==", Unit: "sessions"}},
		bench.Check{Name: "sync lag p99 @" + rate + " msg/s (PERSISTED → confirmed)", Metric: "sync_lag_p99_us", Ours: steady,
			Goal: bench.Goal{Op: "<=", Target: 1_000_000, Unit: "µs"}},
		bench.Check{Name: "sync lag p50 @" + rate + " msg/s", Metric: "sync_lag_p50_us", Ours: steady},
		bench.Check{Name: "sync lag max @" + rate + " msg/s", Metric: "sync_lag_max_us", Ours: steady},
		bench.Check{Name: "messages never confirmed @" + rate + " msg/s", Metric: "unconfirmed", Ours: steady, Goal: bench.Goal{Op: "==", Unit: "messages"}},
		bench.Check{Name: "exactly once @" + rate + " msg/s: rows in Postgres − 2 × entries committed", Metric: "rows_diff", Ours: steady,
			Goal: bench.Goal{Op: "==", Unit: "rows"}},
		bench.Check{Name: "audit chains flagged broken @" + rate + " msg/s", Metric: "broken_sessions", Ours: steady, Goal: bench.Goal{Op: "==", Unit: "sessions"}},
		bench.Check{Name: "PERSISTED p99 @" + rate + " msg/s while syncing", Metric: "persisted_p99_us", Ours: steady},
		bench.Check{Name: "batch commit p50 vs CopyFrom of the same rows", Metric: "p50_us", Ours: "sync", Baseline: "copyfrom"},
		bench.Check{Name: "replay rows/s vs raw pgx CopyFrom", Metric: "throughput_per_s", Ours: "replay", Baseline: "copyfrom"},
		bench.Check{Name: "harness CPU per row, sync vs CopyFrom", Metric: "cpu_harness_us_per_op", Ours: "sync", Baseline: "copyfrom"},
		bench.Check{Name: "Postgres CPU per row, sync vs CopyFrom", Metric: "cpu_postgres_us_per_op", Ours: "sync", Baseline: "copyfrom"},
	)
}

func syncPlots(res *bench.ScenarioResult) {
	rate := rateLabel(syncRate)
	tp := &bench.PlotSpec{File: res.Name + "-rows.png", Title: res.Name + ": rows per second into Postgres (median of repeats)",
		Kind: "bars", YLabel: "rows/s"}
	rows := bench.Series{Name: "rows/s"}
	for _, id := range []string{"sync", "copyfrom", "replay"} {
		tp.Categories = append(tp.Categories, id)
		rows.Y = append(rows.Y, statOf(res, id, "throughput_per_s"))
	}
	tp.Series = []bench.Series{rows}
	lat := &bench.PlotSpec{File: res.Name + "-latency.png", Title: res.Name + ": batch commit and sync lag (median of repeats)",
		Kind: "bars", YLabel: "latency, us (log)", LogY: true,
		Categories: []string{"batch, draining", "CopyFrom batch", "batch @" + rate, "sync lag @" + rate}}
	p50, p99 := bench.Series{Name: "p50"}, bench.Series{Name: "p99"}
	for _, c := range []struct{ run, prefix string }{{"sync", ""}, {"copyfrom", ""}, {"steady-" + rate, ""}, {"steady-" + rate, "sync_lag_"}} {
		p50.Y = append(p50.Y, statOf(res, c.run, c.prefix+"p50_us"))
		p99.Y = append(p99.Y, statOf(res, c.run, c.prefix+"p99_us"))
	}
	lat.Series = []bench.Series{p50, p99}
	res.Plots = append(res.Plots, tp, lat)
}

// statOf is the median of a run's metric (NaN without data).
func statOf(res *bench.ScenarioResult, run, metric string) float64 {
	r := res.Run(run)
	if r == nil {
		return nan()
	}
	return r.Stat(metric).Median
}
