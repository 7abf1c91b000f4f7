// Package token mints and verifies stapes session tokens.
//
// A session token is a compact JWS (RFC 7515) carrying JWT (RFC 7519) claims,
// signed with Ed25519 (alg "EdDSA", RFC 8037):
//
//	base64url(header) "." base64url(claims) "." base64url(signature)
//
// The header is {"alg":"EdDSA","typ":"JWT","kid":"<key id>"}. controld signs
// tokens with a Signer; relays verify them offline with a Keyring holding the
// control plane's public keys, several at a time during a key rotation.
//
// Verification reads nothing from a token's claims before its signature has
// been checked against a key from configuration; the only thing taken from
// the token to choose a key is the kid, looked up in the Keyring. Errors say
// which check failed and never carry token bytes or claim values, which may
// identify a patient.
//
// The package depends on the standard library only.
package token
