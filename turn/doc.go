// Package turn is stapes' TURN layer: the peer-address policy applied on every
// path that creates a permission, REST-style HMAC credentials bound to a
// fitting session, and (to come) a Server wrapping pion/turn/v5 with quotas,
// metrics, drain and a Close that waits.
//
// The policy and the credentials depend on the standard library only, so they
// can be fuzzed and reviewed on their own; the server adapts them to pion's
// hooks (PermissionHandler, AuthHandler).
package turn
