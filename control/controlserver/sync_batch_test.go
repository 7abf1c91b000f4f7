package controlserver

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/stapes-relay/stapes/audit"
	"github.com/stapes-relay/stapes/control/syncproto"
	"github.com/stapes-relay/stapes/relay/wire"
)

// chainer builds the records of one session as a relay would, chaining
// their hashes.
type chainer struct {
	tenant, session string
	seq             uint64
	prev            []byte
}

func newChainer(tenant, session string) *chainer {
	return &chainer{tenant: tenant, session: session, prev: audit.Genesis}
}

func (c *chainer) next(f *wire.Frame) syncproto.Record {
	c.seq++
	f.Seq = c.seq
	frame := wire.Encode(f)
	h := audit.Hash(c.prev, c.session, c.seq, frame)
	c.prev = h
	return syncproto.Record{Tenant: c.tenant, Session: c.session, Seq: c.seq, Hash: h, Frame: frame}
}

func deliver(sender, clientID string, kind wire.Kind, payload []byte) *wire.Frame {
	return &wire.Frame{Type: wire.TypeDeliver, Sender: sender, Role: wire.RoleClinician, ClientID: clientID, Kind: kind,
		Flags: wire.FlagDurable, Payload: payload}
}

func receipt(acker string, ref uint64, stage wire.Stage) *wire.Frame {
	return &wire.Frame{Type: wire.TypeReceipt, Sender: acker, Role: wire.RolePatient, RefSeq: ref, Stage: stage}
}

func configCmd(base uint64, gain int64) []byte {
	return wire.AppendConfig(nil, &wire.Config{BaseVersion: base, Params: []wire.Param{{Name: "gain", Value: gain}}})
}

// postBatch sends b with the credential and content type given.
func (e *env) postBatch(cred, contentType string, body []byte) (int, syncAnswer, []byte) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(e.t), "POST", e.hs.URL+"/v1/relay/sync", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a syncAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &a); err != nil {
			e.t.Fatal(err)
		}
	}
	return resp.StatusCode, a, b
}

func TestSyncBatches(t *testing.T) {
	e := newEnv(t)
	e.clinic("t1")
	e.clinic("t2")
	shared := e.relayNode("shared", "eu", "wss://shared.example/v1/connect", 0)
	var own struct {
		Credential string `json:"credential"`
	}
	e.must(http.StatusCreated, "POST", "/v1/operator/relays", testOperator, map[string]any{"id": "t1-own", "region": "eu", "tenant_id": "t1"}, &own)
	var sess sessionAnswer
	e.must(http.StatusCreated, "POST", "/v1/sessions", e.login("t1"), map[string]any{"patient_id": "p1", "device_serial": "t1-SN1"}, &sess)
	sid := sess.SessionID

	ch := newChainer("t1", sid)
	first := []syncproto.Record{
		ch.next(deliver("c1", "a", wire.KindConfig, configCmd(0, 10))), // 1
		ch.next(receipt("p1", 1, wire.StageApplied)),                   // 2
		ch.next(deliver("c1", "b\x00nul", wire.KindChat, []byte("x"))), // 3: NUL in a client id
	}
	batch := func(relay string, pos uint64, recs ...syncproto.Record) []byte {
		return syncproto.Append(nil, &syncproto.Batch{Relay: relay, Pos: pos, Records: recs})
	}

	t.Run("refused batches", func(t *testing.T) {
		other := newChainer("t2", "s-t2")
		tests := []struct {
			name        string
			cred, ctype string
			body        []byte
			want        int
		}{
			{"wrong content type", shared, "application/json", batch("shared", 1, first...), http.StatusUnsupportedMediaType},
			{"malformed", shared, syncproto.ContentType, []byte("SSB1garbage"), http.StatusBadRequest},
			{"another relay's name", shared, syncproto.ContentType, batch("t1-own", 1, first...), http.StatusForbidden},
			{"tenant relay, other tenant", own.Credential, syncproto.ContentType, batch("t1-own", 1, other.next(deliver("c1", "x", wire.KindChat, nil))), http.StatusForbidden},
			{"session id not UTF-8", shared, syncproto.ContentType, batch("shared", 1, syncproto.Record{Tenant: "t1", Session: "\xff", Seq: 1, Frame: []byte{5}}), http.StatusBadRequest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if code, _, b := e.postBatch(tt.cred, tt.ctype, tt.body); code != tt.want {
					t.Fatalf("status %d %s, want %d", code, b, tt.want)
				}
			})
		}
		if n := e.count("audit_log"); n != 0 {
			t.Fatalf("refused batches stored %d audit rows", n)
		}
	})

	t.Run("stored once, config advanced, NUL made storable", func(t *testing.T) {
		code, a, b := e.postBatch(shared, syncproto.ContentType, batch("shared", 7, first...))
		if code != http.StatusOK || a.AckedPos != 7 || a.Inserted != 3 || a.Messages != 2 || a.Receipts != 1 || len(a.Broken) != 0 {
			t.Fatalf("answer %d %s", code, b)
		}
		if dc, _ := e.st.DeviceConfig(ctxT(t), "t1", "t1-SN1"); dc.Version != 1 || dc.Params["gain"] != 10 {
			t.Fatalf("device config %+v, want version 1", dc)
		}
		if n := e.count("messages WHERE session_id = $1 AND client_id = $2", sid, "b\uFFFDnul"); n != 1 {
			t.Fatalf("message with NUL in its client id not stored with U+FFFD")
		}
		code, a, _ = e.postBatch(own.Credential, syncproto.ContentType, batch("t1-own", 8, first...))
		if code != http.StatusOK || a.Inserted != 0 || a.Messages != 0 || a.Receipts != 0 {
			t.Fatalf("replay through the tenant's own relay: %d %+v", code, a)
		}
	})

	t.Run("continues the stored chain; a stale base conflicts", func(t *testing.T) {
		// Version 1 → 2 outside this session (another relay's session).
		if _, err := e.st.AdvanceDeviceConfig(ctxT(t), pgstoreChange("t1", "t1-SN1", 1)); err != nil {
			t.Fatal(err)
		}
		next := []syncproto.Record{
			ch.next(deliver("c1", "c", wire.KindConfig, configCmd(1, 20))), // 4: base 1, but Postgres is at 2
			ch.next(receipt("p1", 4, wire.StageApplied)),                   // 5
		}
		code, a, b := e.postBatch(shared, syncproto.ContentType, batch("shared", 9, next...))
		if code != http.StatusOK || a.Inserted != 2 || len(a.Broken) != 0 || !slices.Equal(a.ConfigConflicts, []string{sid}) {
			t.Fatalf("answer %d %s, want 2 inserted, no broken, a config conflict", code, b)
		}
		if dc, _ := e.st.DeviceConfig(ctxT(t), "t1", "t1-SN1"); dc.Version != 2 {
			t.Fatalf("device version %d, want 2 (the conflicting command must not advance it)", dc.Version)
		}
	})

	t.Run("broken chains are flagged", func(t *testing.T) {
		gap := newChainer("t1", "gap")
		gap.next(deliver("c1", "1", wire.KindChat, nil)) // seq 1 never synced
		lost := gap.next(deliver("c1", "2", wire.KindChat, nil))
		nohash := newChainer("t1", "nohash").next(deliver("c1", "1", wire.KindChat, nil))
		nohash.Hash = nil // sent as all zero
		forged := newChainer("t1", "forged")
		f1 := forged.next(deliver("c1", "1", wire.KindChat, []byte("a")))
		f2 := forged.next(deliver("c1", "2", wire.KindChat, []byte("b")))
		f2.Frame = wire.Encode(&wire.Frame{Type: wire.TypeDeliver, Seq: 2, Sender: "c1", ClientID: "2", Kind: wire.KindChat, Payload: []byte("B")})
		f3 := forged.next(deliver("c1", "3", wire.KindChat, []byte("c")))
		code, a, b := e.postBatch(shared, syncproto.ContentType, batch("shared", 10, lost, nohash, f1, f2, f3))
		want := []string{"gap", "nohash", "forged"}
		if code != http.StatusOK || a.Inserted != 5 || !slices.Equal(a.Broken, want) {
			t.Fatalf("answer %d %s, want 5 stored and broken %q", code, b, want)
		}
		if n := e.count("audit_log WHERE chain_broken"); n != 3 {
			t.Fatalf("%d flagged audit rows, want 3", n)
		}
		if n := e.count("messages WHERE session_id IN ('gap', 'nohash', 'forged')"); n != 2 {
			t.Fatalf("%d messages stored from broken sessions, want 2 (forged seqs 1 and 3)", n)
		}
	})
}
