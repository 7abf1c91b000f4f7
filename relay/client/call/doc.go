// Package call places and answers WebRTC calls between the participants
// of a fitting session: the session protocol carries the signalling
// (offer, answer, ICE candidates, bye) as ephemeral messages of kind
// wire.KindSignal, and pion/webrtc/v4 carries the media, relay-only
// through the relay's TURN server by default.
//
// A Call sends audio- and video-sized RTP at a steady rate (50 packets/s
// of 160 bytes and 30 of 1200 bytes by default) and pings over a data
// channel, and reports packets sent, received and lost per stream and the
// data channel's round-trip times. It is what `stapes sim` uses to place
// a call, and the reference for the apps' signalling.
//
// Signalling payloads are JSON (see Signal). Ephemeral messages are
// dropped when the other participant is not connected, so the caller
// sends its offer again until an answer arrives and each offer or answer
// again holds every candidate gathered so far: a lost candidate message
// costs nothing. SDP and candidates name addresses: they are never
// logged.
package call
