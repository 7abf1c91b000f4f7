package relay

import (
	"crypto/tls"

	"github.com/stapes-relay/stapes/internal/selfsigned"
)

// SelfSigned returns a self-signed certificate for local use, valid for
// the given host names and IP addresses for 30 days. Clients must be told
// to trust it explicitly (its DER is Certificate[0]).
func SelfSigned(hosts ...string) (tls.Certificate, error) { return selfsigned.New(hosts...) }
