package storage

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	dto "github.com/prometheus/client_model/go"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Benchmarks commit one entry (a 64..256-byte frame with an idempotency
// key) per Commit on a real directory under b.TempDir(), from 1, 16 or 64
// goroutines with one session each; b.N is the total number of commits.
// BenchmarkRawPebbleSync writes the same keys as plain synced Pebble
// batches, so the difference is the store's own overhead (validation reads,
// bookkeeping, metrics).

func benchFrames() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	frames := make([][]byte, 256)
	for i := range frames {
		f := make([]byte, 64+rng.IntN(193))
		for j := range f {
			f[j] = byte(rng.Uint32())
		}
		frames[i] = f
	}
	return frames
}

// runWorkers runs workers goroutines that together call commit b.N times;
// commit gets the worker's index and its next seq (from 1).
func runWorkers(b *testing.B, workers int, commit func(worker int, seq uint64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range workers {
		wg.Go(func() {
			for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
				if err := commit(w, seq); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

func benchCommit(b *testing.B, workers int) {
	s := openStore(b, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
	frames := benchFrames()
	ctx := context.Background()
	sessions := make([]string, workers)
	for i := range sessions {
		sessions[i] = fmt.Sprintf("bench-%d", i)
	}
	runWorkers(b, workers, func(w int, seq uint64) error {
		e := []wire.LogEntry{{Seq: seq, Key: "msg-" + strconv.FormatUint(seq, 10), Frame: frames[seq%uint64(len(frames))]}}
		return s.Commit(ctx, sessions[w], e, nil)
	})
	b.ReportMetric(float64(walFsyncs(b, s))/float64(b.N), "fsyncs/op")
}

func BenchmarkCommit1(b *testing.B)          { benchCommit(b, 1) }
func BenchmarkCommitParallel16(b *testing.B) { benchCommit(b, 16) }
func BenchmarkCommitParallel64(b *testing.B) { benchCommit(b, 64) }

func BenchmarkRawPebbleSync(b *testing.B) {
	for _, workers := range []int{1, 16, 64} {
		b.Run(strconv.Itoa(workers), func(b *testing.B) {
			fail := &failure{log: slog.New(slog.DiscardHandler)}
			cache := pebble.NewCache(defaultCacheSize)
			db, err := pebble.Open(b.TempDir(), &pebble.Options{
				Cache:              cache,
				MemTableSize:       defaultMemTableSize,
				FormatMajorVersion: pebble.FormatNewest,
				Logger:             pebbleLogger{log: fail.log, fail: fail},
			})
			cache.Unref()
			if err != nil {
				b.Fatalf("pebble.Open: %v", err)
			}
			defer db.Close()
			defer func() {
				var m dto.Metric
				_ = db.Metrics().LogWriter.FsyncLatency.Write(&m)
				b.ReportMetric(float64(m.GetHistogram().GetSampleCount())/float64(b.N), "fsyncs/op")
			}()
			frames := benchFrames()
			sessions := make([]string, workers)
			for i := range sessions {
				sessions[i] = fmt.Sprintf("bench-%d", i)
			}
			runWorkers(b, workers, func(w int, seq uint64) error {
				sess := sessions[w]
				batch := db.NewBatch()
				_ = batch.Set(logKey(sess, seq), frames[seq%uint64(len(frames))], nil)
				_ = batch.Set(idemKey(sess, "msg-"+strconv.FormatUint(seq, 10)), encodeSeq(seq), nil)
				_ = batch.Set(headKey(sess), encodeSeq(seq), nil)
				if err := db.Apply(batch, pebble.Sync); err != nil {
					return err
				}
				return batch.Close()
			})
		})
	}
}
