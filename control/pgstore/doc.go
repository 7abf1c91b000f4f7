// Package pgstore is the control plane's PostgreSQL store: the schema
// (forward-only SQL migrations embedded in the binary, applied by Migrate),
// the repository controld's API needs (tenants, clinicians, patients,
// devices, care relationships, fitting sessions, relay nodes, the
// authoritative device config version with compare-and-set), and the
// idempotent ingest of what relays sync (messages, receipts, audit
// entries: COPY into a session-local staging table, then INSERT … ON
// CONFLICT DO NOTHING, one transaction per batch).
//
// Every query names its tenant; a row of one tenant is never visible
// through another tenant's id.
//
// Nothing here logs PHI: payloads, audit entries, patient display names,
// password hashes and tokens never appear in log lines or error messages.
// Errors wrap the sentinels in errors.go.
package pgstore
