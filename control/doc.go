// Package control is the relay-side client of the control plane: it ships
// the relay's sync outbox to controld (Syncer) and, later, registers the
// node, fetches token keys and the relay map. A relay works on when the
// control plane is down and catches up afterwards: nothing here is on the
// path of a client's message.
package control
