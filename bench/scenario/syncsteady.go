package scenario

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/relay/wire"
)

// syncConfirmWait bounds how long the steady run waits, after the load,
// for the syncer to confirm every persisted message, and then for the
// relay to be quiet and fully synced.
const syncConfirmWait = 5 * time.Second

// steadySync sends durable messages open loop at rate for d over
// sessions sessions (patients ACK each one) while a syncer with relayd's
// defaults runs, and measures the sync lag of every message: from its
// PERSISTED reaching the sender to controld confirming the batch that
// holds it.
func steadySync(ctx context.Context, e *Env, s *syncStack, r *syncRelay, rate float64, d time.Duration, sessions int) (map[string]float64, error) {
	tr, err := bench.OpenLoop{Rate: rate, Duration: d}.Start()
	if err != nil {
		return nil, err
	}
	book := newLagBook()
	pairs, err := dialPairs(ctx, e, r, "sync-steady", sessions, 0, func(p *syncPair, f *wire.Frame) {
		at := time.Now()
		if id, ok := strings.CutPrefix(f.ClientID, "s"); ok {
			if n, err := strconv.ParseUint(id, 10, 64); err == nil {
				tr.Complete(n)
			}
		}
		book.persist(recKey{p.id, f.Seq}, at)
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range pairs {
			p.Close()
		}
	}()
	tap := newSyncTap(false, book.confirm)
	defer tap.Close()
	sy, err := s.syncer(r, tap)
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = sy.Run(sctx) }()
	defer func() { stop(); wg.Wait() }()

	body := make([]byte, syncPayload)
	u := bench.StartUsage(s.procs()...)
	res, err := tr.Run(ctx, func(ctx context.Context, id uint64) error {
		return pairs[int(id)%len(pairs)].clin.Send(ctx, messageFrame("s"+strconv.FormatUint(id, 10), body))
	})
	if err != nil {
		return nil, err
	}
	usage := u.Metrics(res.Done)
	deadline := time.Now().Add(syncConfirmWait)
	for book.pending() > 0 && time.Now().Before(deadline) {
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil { // polling the lag book
			return nil, err
		}
	}
	lag, unconfirmed := book.finish(time.Now())
	for _, p := range pairs {
		if err := p.err(); err != nil {
			return nil, err
		}
		p.Close()
	}
	// Exactly once under load: once the relay is quiet and the syncer
	// has caught up, Postgres must hold two rows per committed entry.
	ids := make([]string, len(pairs))
	for i, p := range pairs {
		ids[i] = p.id
	}
	committed, err := quiesce(ctx, r, ids, deadline.Add(syncConfirmWait))
	if err != nil {
		return nil, err
	}
	stored, err := storedRows(ctx, s, ids)
	if err != nil {
		return nil, err
	}
	tap.mu.Lock()
	m := tap.rtt.Percentiles().Metrics("")
	m["batches"] = float64(tap.rtt.Count())
	m["failed_batches"] = float64(tap.failed)
	m["broken_sessions"] = float64(tap.broken)
	tap.mu.Unlock()
	m["rows_diff"] = float64(stored - 2*committed)
	m["entries"] = float64(committed)
	maps.Copy(m, usage)
	maps.Copy(m, lag.Percentiles().Metrics("sync_lag_"))
	m["unconfirmed"] = float64(unconfirmed)
	m["persisted_p50_us"] = float64(res.Latency.Quantile(0.5)) / 1e3
	m["persisted_p99_us"] = float64(res.Latency.Quantile(0.99)) / 1e3
	m["lag_p99_us"] = float64(res.Lag.Quantile(0.99)) / 1e3
	m["throughput_per_s"] = res.Throughput
	m["sent"] = float64(res.Sent)
	m["lost"] = float64(res.Lost)
	if book.persistedCount() == 0 {
		return m, fmt.Errorf("scenario: no message was persisted")
	}
	return m, nil
}

// quiesce waits until the relay commits nothing more for sessions and the
// syncer has shipped everything committed, and returns the sessions'
// entries in total.
func quiesce(ctx context.Context, r *syncRelay, sessions []string, deadline time.Time) (int64, error) {
	heads := func() (int64, error) {
		var n int64
		for _, id := range sessions {
			h, err := r.st.Head(ctx, id)
			if err != nil {
				return 0, err
			}
			n += int64(h)
		}
		return n, nil
	}
	for {
		before, err := heads()
		if err != nil {
			return 0, err
		}
		synced := r.st.OutboxAcked() >= r.st.OutboxStable()
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil { // polling the store
			return 0, err
		}
		after, err := heads()
		if err != nil {
			return 0, err
		}
		if synced && after == before && r.st.OutboxAcked() >= r.st.OutboxStable() {
			return after, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("scenario: the relay's outbox was not synced within %s after the load (acked %d of %d)",
				2*syncConfirmWait, r.st.OutboxAcked(), r.st.OutboxStable())
		}
	}
}
