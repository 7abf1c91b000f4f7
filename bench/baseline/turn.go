package baseline

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"
)

// TURNRealm and TURNSecret are the pion-turn baseline's realm and REST
// shared secret (loopback benchmark only).
const (
	TURNRealm  = "stapes"
	TURNSecret = "bench-turn-secret-0123456789"
)

// ServeTURN runs an unmodified pion/turn/v5 server the way its examples
// do: one UDP socket on loopback, REST credentials (LongTermTURNRESTAuth-
// Handler), relayed sockets on 127.0.0.1, every peer permitted. ready gets
// the address.
func ServeTURN(ctx context.Context, ready func(addr string)) error {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("baseline: turn listen: %w", err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	s, err := pturn.NewServer(pturn.ServerConfig{
		Realm:         TURNRealm,
		AuthHandler:   pturn.LongTermTURNRESTAuthHandler(TURNSecret, lf.NewLogger("auth")),
		LoggerFactory: lf,
		PacketConnConfigs: []pturn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &pturn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"},
		}},
	})
	if err != nil {
		pc.Close()
		return fmt.Errorf("baseline: turn: %w", err)
	}
	ready(pc.LocalAddr().String())
	<-ctx.Done()
	return s.Close()
}
