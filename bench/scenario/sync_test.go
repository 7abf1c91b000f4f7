package scenario

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/control/pglocal"
	"github.com/stapes-relay/stapes/control/syncproto"
)

func TestLagBook(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	body := func(seqs ...uint64) []byte {
		b := &syncproto.Batch{Relay: "r", Pos: 1}
		for _, s := range seqs {
			b.Records = append(b.Records, syncproto.Record{Tenant: "t", Session: "s", Seq: s, Frame: []byte{1}})
		}
		return syncproto.Append(nil, b)
	}
	tests := []struct {
		name            string
		run             func(b *lagBook)
		wantMax         time.Duration
		wantCount       uint64
		wantUnconfirmed int
	}{
		{"persisted then confirmed", func(b *lagBook) {
			b.persist(recKey{"s", 1}, at(0))
			b.confirm(body(1), at(40))
		}, 40 * time.Millisecond, 1, 0},
		{"confirmed before PERSISTED was read counts 0", func(b *lagBook) {
			b.confirm(body(1), at(10))
			b.persist(recKey{"s", 1}, at(15))
		}, 0, 1, 0},
		{"receipts confirmed without PERSISTED are not counted", func(b *lagBook) {
			b.persist(recKey{"s", 1}, at(0))
			b.confirm(body(1, 2), at(5))
		}, 5 * time.Millisecond, 1, 0},
		{"never confirmed: censored at the lag reached", func(b *lagBook) {
			b.persist(recKey{"s", 1}, at(0))
			b.persist(recKey{"s", 3}, at(100))
			b.confirm(body(1), at(20))
		}, 900 * time.Millisecond, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newLagBook()
			tc.run(b)
			h, unconfirmed := b.finish(at(1000))
			if got := h.Count(); got != tc.wantCount {
				t.Errorf("count: got %d, want %d", got, tc.wantCount)
			}
			if got := h.Max(); got < tc.wantMax-tc.wantMax/100 || got > tc.wantMax+tc.wantMax/100 {
				t.Errorf("max: got %v, want %v", got, tc.wantMax)
			}
			if unconfirmed != tc.wantUnconfirmed {
				t.Errorf("unconfirmed: got %d, want %d", unconfirmed, tc.wantUnconfirmed)
			}
		})
	}
}

// The sync scenario, tiny, end to end against a private PostgreSQL: it
// runs, and what must hold whatever the speed holds — a replay inserts
// nothing, every committed entry is in Postgres exactly once after the
// drain, the baseline copies exactly the sync's rows. It never asserts a
// speed.
func TestSyncScenarioSmall(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"))
	if testing.Short() {
		t.Skip("starts PostgreSQL and runs a small sync load")
	}
	if _, err := pglocal.FindBinaries(context.Background()); err != nil && os.Geteuid() != 0 {
		t.Skipf("no PostgreSQL server binaries and not root to install them: %v", err)
	}
	dir, err := os.MkdirTemp("", "stapes-bench-sync-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	e, err := NewEnv(dir, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	o := Options{Duration: 400 * time.Millisecond, Repeat: 1, SyncEntries: 2000}.WithDefaults()
	res := &bench.ScenarioResult{Name: "sync"}
	if err := runSync(context.Background(), e, o, res); err != nil {
		t.Fatal(err)
	}
	res.Finish()
	for _, r := range res.Runs {
		if len(r.Samples) != 1 || r.Samples[0].Error != "" {
			t.Fatalf("run %s: %+v", r.ID, r.Samples)
		}
	}
	for _, name := range []string{"replayed batches: rows inserted", "exactly once: rows in Postgres − 2 × entries committed (after sync and replay)",
		"audit chains flagged broken, draining"} {
		c, ok := findCheck(res, name)
		if !ok || c.Verdict != bench.Met {
			t.Errorf("%s: %+v, want met", name, c)
		}
	}
	if c, _ := findCheck(res, "rows/s, outbox → Postgres vs raw pgx CopyFrom"); !c.Value.Valid() {
		t.Errorf("no rows/s ratio: %+v", c)
	}
	if got := res.Run("sync").Stat("entries").Median; got < 1900 {
		t.Errorf("entries synced: got %v, want about 2000", got)
	}
}
