package wire

// LogEntry is one entry of a session log as a relay commits, stores and
// replicates it: its sequence number, the frame delivered to participants
// (a DELIVER or RECEIPT frame, encoded, with Seq set), and the idempotency
// key it was committed under ("" for none). Stores treat Frame as opaque.
type LogEntry struct {
	Seq   uint64
	Key   string
	Frame []byte
	// Hash is the entry's audit-chain hash (32 bytes, see package audit),
	// or nil when the writer keeps no chain.
	Hash []byte
}
