package scenario

import (
	"bufio"
	"strings"
	"testing"
)

func TestSumMetric(t *testing.T) {
	text := `# HELP stapes_relay_replicated_entries_total Log entries stored as a replica.
# TYPE stapes_relay_replicated_entries_total counter
stapes_relay_replicated_entries_total 8512
stapes_relay_replicated_entries_total_other 5
stapes_relay_drops_total{reason="queue_full"} 3
stapes_relay_drops_total{reason="max_conns"} 1.5e1
`
	tests := []struct {
		metric string
		want   float64
	}{
		{"stapes_relay_replicated_entries_total", 8512},
		{"stapes_relay_drops_total", 18},
		{"stapes_relay_sessions", 0},
	}
	for _, tc := range tests {
		got, err := sumMetric(bufio.NewScanner(strings.NewReader(text)), tc.metric)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.metric, got, err, tc.want)
		}
	}
}

func TestReadyAddrs(t *testing.T) {
	line := `{"time":"2026-11-23T10:00:00Z","level":"INFO","msg":"relayd ready","ws":"127.0.0.1:4431","quic":"127.0.0.1:4431","ops":"127.0.0.1:9191","data":"/d","tls":true}`
	ws, ops, ok := readyAddrs(line)
	if !ok || ws != "127.0.0.1:4431" || ops != "127.0.0.1:9191" {
		t.Errorf("got %q %q %v", ws, ops, ok)
	}
	if _, _, ok := readyAddrs(`{"msg":"relayd starting"}`); ok {
		t.Error("a line that is not the ready line was taken")
	}
}
