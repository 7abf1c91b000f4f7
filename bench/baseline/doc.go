// Package baseline holds what stapes is measured against: a minimal
// two-hop WebSocket forwarder and echo (coder/websocket, io.Copy of each
// message), the same over QUIC streams (quic-go, io.Copy of the stream),
// bare gorilla/websocket and coder/websocket echo servers for idle memory,
// raw Pebble synced batch commits, and raw append+fdatasync on a file.
// Servers take listeners; `stapes bench _serve` runs them as separate
// processes so their CPU and memory are measured on their own.
package baseline
