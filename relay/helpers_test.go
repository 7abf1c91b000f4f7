package relay_test

import (
	"net/http"
	"testing"

	"github.com/stapes-relay/stapes/relay/relaytest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func httpsClient(r *relaytest.Relay) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: r.ClientTLS()}}
}
