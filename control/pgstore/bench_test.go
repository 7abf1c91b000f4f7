package pgstore

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The sync's performance goal: idempotent ingest at ≥ 0.8× plain CopyFrom
// into a plain table with the same columns and primary key, batch for
// batch, in the same run. Compare the rows/s of:
//
//	BenchmarkIngestMessages        fresh batches (the steady state: fast path)
//	BenchmarkIngestMessagesStaged  fresh batches forced through staging + ON CONFLICT
//	BenchmarkIngestMessagesReplay  an already stored batch again (inserts 0)
//	BenchmarkRawCopyFrom           plain CopyFrom, same table shape
//	BenchmarkRawCopyFromNoKey      plain CopyFrom into a table without a key
//
// Each op is one batch of benchBatch rows in one transaction.

const benchBatch = 1000

func benchRows(batch int) []Message {
	at := time.Now()
	payload := make([]byte, 160) // a config command or a chat line
	ms := make([]Message, benchBatch)
	for i := range ms {
		ms[i] = Message{TenantID: "tenant-0001", SessionID: "bench-session", Seq: uint64(batch*benchBatch + i + 1),
			Sender: "clinician-0001", Kind: 1, ClientID: "client-msg-id-0001", Payload: payload, CreatedAt: at}
	}
	return ms
}

// messageSource is ms for pgx.CopyFrom, as a plain pgx user would write it.
func messageSource(ms []Message) pgx.CopyFromSource {
	return pgx.CopyFromSlice(len(ms), func(i int) ([]any, error) {
		r := &ms[i]
		return []any{r.TenantID, r.SessionID, int64(r.Seq), r.Sender, int32(r.Kind), r.ClientID, r.Payload, r.CreatedAt}, nil
	})
}

func reportRows(b *testing.B, rows int) {
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkIngestMessages(b *testing.B) {
	s := newStore(b)
	ctx := ctxT(b)
	rows := 0
	for i := 0; b.Loop(); i++ {
		n, err := s.IngestMessages(ctx, benchRows(i))
		if err != nil || n != benchBatch {
			b.Fatalf("IngestMessages = %d, %v", n, err)
		}
		rows += int(n)
	}
	reportRows(b, rows)
}

func BenchmarkIngestMessagesStaged(b *testing.B) {
	s := newStore(b)
	ctx := ctxT(b)
	rows := 0
	for i := 0; b.Loop(); i++ {
		c, err := s.ingestTx(ctx, syncSources(&SyncRows{Messages: benchRows(i)}), nil, true)
		if err != nil || c.Messages != benchBatch {
			b.Fatalf("staged ingest = %d, %v", c.Messages, err)
		}
		rows += int(c.Messages)
	}
	reportRows(b, rows)
}

func BenchmarkIngestMessagesReplay(b *testing.B) {
	s := newStore(b)
	ctx := ctxT(b)
	batch := benchRows(0)
	if _, err := s.IngestMessages(ctx, batch); err != nil {
		b.Fatal(err)
	}
	rows := 0
	for b.Loop() {
		n, err := s.IngestMessages(ctx, batch)
		if err != nil || n != 0 {
			b.Fatalf("replay IngestMessages = %d, %v", n, err)
		}
		rows += len(batch)
	}
	reportRows(b, rows)
}

func benchRaw(b *testing.B, ddl string) {
	s := newStore(b)
	ctx := ctxT(b)
	if _, err := s.pool.Exec(ctx, ddl); err != nil {
		b.Fatal(err)
	}
	rows := 0
	for i := 0; b.Loop(); i++ {
		n, err := s.pool.CopyFrom(ctx, pgx.Identifier{"raw_messages"}, messageBatch.cols, messageSource(benchRows(i)))
		if err != nil || n != benchBatch {
			b.Fatalf("CopyFrom = %d, %v", n, err)
		}
		rows += int(n)
	}
	reportRows(b, rows)
}

func BenchmarkRawCopyFrom(b *testing.B) {
	benchRaw(b, "CREATE TABLE raw_messages (LIKE messages INCLUDING ALL)")
}

func BenchmarkRawCopyFromNoKey(b *testing.B) {
	benchRaw(b, "CREATE TABLE raw_messages (LIKE messages INCLUDING DEFAULTS)")
}
