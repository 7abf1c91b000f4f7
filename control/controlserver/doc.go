// Package controlserver is controld's HTTP API over the Postgres store
// (package pgstore): clinician login and their patients, fitting sessions
// with Ed25519 session tokens for both sides and the relay to use, the
// operator API (tenants, clinicians, patients, devices, care, model
// limits, relays, signing keys, feature flags), the relay API (register,
// heartbeat, token keys, relay map) and the ingest of relay sync batches
// (package syncproto) with audit-chain verification.
//
// Three kinds of bearer credential, one per audience:
//   - clinicians: an API token from POST /v1/login, HMAC-signed by the
//     server (see apitoken.go), checked against the clinician's row on
//     every request;
//   - operators: the operator token from Config;
//   - relays: a node credential minted by POST /v1/operator/relays, of
//     which Postgres keeps only a hash.
//
// Logs carry ids only: never payloads, tokens, credentials, passwords,
// e-mail addresses or patient names. The API is documented in
// openapi.json, served at GET /openapi.json and checked against the
// routes by a test.
package controlserver
