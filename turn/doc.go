// Package turn is stapes' TURN layer: Server, a TURN server built on
// pion/turn/v5 with REST-style HMAC credentials bound to a fitting session,
// the peer-address policy on every path that creates a permission, quotas,
// bandwidth caps, metrics, usage accounting, drain and a Close that waits.
//
// The policy and the credentials depend on the standard library only, so
// they can be fuzzed and reviewed on their own; the Server adapts them to
// pion's hooks (AuthHandler, PermissionHandler, QuotaHandler) and wraps
// every socket pion touches, relaying ChannelData on its own fast path.
package turn
