// Package client is the Go client SDK of the stapes session protocol: it
// connects to a relay over WebSocket or QUIC, keeps the connection alive,
// reconnects and resumes without gaps or duplicates, retries durable sends
// idempotently and tracks their PERSISTED seq and receipts, and acks
// deliveries.
//
// A Client owns one supervisor goroutine that dials, runs and re-dials
// connections; each connection has one reader and one writer goroutine
// (on QUIC the transport adds one pump goroutine per stream, owned by the
// transport). Close stops and waits for all of them.
//
// docs/protocol.md is the contract this package implements; relay/wire is
// the frame codec.
package client
