// Package relay is the stapes session server: admission, fitting sessions,
// durable ordered delivery with receipts, resume, device-config
// compare-and-set, ephemeral fan-out and drain.
//
// The core (session.go, conn.go, delivery) is transport-neutral; ws.go and
// quic.go adapt WebSocket and QUIC connections to it. Durable state goes
// through the Store interface, token checks through Authenticator; both are
// declared here and implemented elsewhere (storage, token).
package relay
