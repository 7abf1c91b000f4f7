package controlserver

import (
	"net"
	"strconv"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
)

// iceServer is one entry of a session answer's ice_servers, in the shape
// of WebRTC's RTCIceServer (urls, username, credential) plus the
// credential's expiry.
type iceServer struct {
	URLs       []string  `json:"urls"`
	Username   string    `json:"username"`
	Credential string    `json:"credential"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// TURN address keys a relay publishes in its addresses (register and
// heartbeat): "turn" is host:port of TURN over UDP and TCP, "turns" of
// TURN over TLS.
const (
	addrTURN  = "turn"
	addrTURNS = "turns"
)

// checkTURNAddress refuses a published TURN address that is not
// host:port.
func checkTURNAddress(v string) bool {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

// turnURLs are the ICE server URLs of a relay's published TURN addresses.
func turnURLs(addrs map[string]string) []string {
	var urls []string
	if a := addrs[addrTURN]; a != "" {
		urls = append(urls, "turn:"+a+"?transport=udp", "turn:"+a+"?transport=tcp")
	}
	if a := addrs[addrTURNS]; a != "" {
		urls = append(urls, "turns:"+a+"?transport=tcp")
	}
	return urls
}

// iceServers mints a TURN credential for session x on node, valid until
// expiry (the session tokens'), when TURN secrets are configured and the
// relay publishes a TURN address; nil otherwise.
func (s *Server) iceServers(x pgstore.Session, node pgstore.Node, expiry time.Time) ([]iceServer, error) {
	if s.turn == nil {
		return nil, nil
	}
	urls := turnURLs(node.Addresses)
	if len(urls) == 0 {
		return nil, nil
	}
	user, pass, exp, err := s.turn.Mint(x.ID, expiry.Sub(s.cfg.Now()))
	if err != nil {
		return nil, err
	}
	return []iceServer{{URLs: urls, Username: user, Credential: pass, ExpiresAt: exp.UTC()}}, nil
}
