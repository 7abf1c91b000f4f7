package controlserver

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/relay/wire"
)

// BenchmarkSyncIngest measures POST /v1/relay/sync end to end (decode,
// chain verification, three idempotent ingests) for fresh batches of
// 5000 entries (control.Syncer's default batch size) over 50 sessions:
// half messages, half receipts. Compare its rows/s with pgstore's
// BenchmarkRawCopyFrom.
func BenchmarkSyncIngest(b *testing.B) {
	e := newEnv(b)
	cred := e.relayNode("bench", "eu", "", 0)
	const sessions, perSession = 50, 100
	chains := make([]*chainer, sessions)
	payload := make([]byte, 200)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		var recs []syncproto.Record
		for s := range chains {
			if i == 0 {
				chains[s] = newChainer("t1", fmt.Sprintf("bench-%d", s))
			}
			for k := 0; k < perSession/2; k++ {
				m := chains[s].next(deliver("c1", fmt.Sprint(i, "-", k), wire.KindChat, payload))
				recs = append(recs, m, chains[s].next(receipt("p1", m.Seq, wire.StageReceived)))
			}
		}
		body := syncproto.Append(nil, &syncproto.Batch{Relay: "bench", Pos: uint64(i + 1), Records: recs})
		code, a, raw := e.postBatch(cred, syncproto.ContentType, body)
		if code != http.StatusOK || a.Inserted != sessions*perSession {
			b.Fatalf("batch %d: %d %s", i, code, raw)
		}
	}
	b.ReportMetric(float64(b.N*sessions*perSession)/time.Since(start).Seconds(), "entries/s")
}
