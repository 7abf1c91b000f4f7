package gossip

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events       *prometheus.CounterVec
	drops        *prometheus.CounterVec
	metaErrors   prometheus.Counter
	settled      *prometheus.CounterVec
	syncs        prometheus.Counter
	syncErrors   prometheus.Counter
	leaveNotices *prometheus.CounterVec
}

func newMetrics() *metrics {
	const ns = "stapes_gossip_"
	return &metrics{
		events:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "events_total", Help: "Membership events seen, by type."}, []string{"type"}),
		drops:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "event_drops_total", Help: "Membership events not delivered to the handler, by reason."}, []string{"reason"}),
		metaErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "meta_decode_errors_total", Help: "Membership events whose node metadata could not be decoded."}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "settles_total",
			Help: "Settling periods after a join that ended, by result: stable (converged) or timeout."}, []string{"result"}),
		syncs:        prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "settle_syncs_total", Help: "Full-state syncs with a random member while settling after a join."}),
		syncErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "settle_sync_errors_total", Help: "Settling syncs that failed."}),
		leaveNotices: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "leave_notices_total", Help: "Leave notices sent to members when leaving, by result: sent or error."}, []string{"result"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer, c *Cluster) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, col := range []prometheus.Collector{m.events, m.drops, m.metaErrors, m.settled, m.syncs, m.syncErrors, m.leaveNotices, (*collector)(c)} {
		errs = append(errs, reg.Register(col))
	}
	return errors.Join(errs...)
}

var (
	descMembers   = prometheus.NewDesc("stapes_gossip_members", "Members as this node sees them, by state: alive (suspects included), dead and left (until reclaimed).", []string{"state"}, nil)
	descConverged = prometheus.NewDesc("stapes_gossip_converged", "1 when the member list settled after the last join (Cluster.Converged), else 0.", nil, nil)
	descHealth    = prometheus.NewDesc("stapes_gossip_health_score", "memberlist's local health score (0 is healthy; higher stretches probe intervals).", nil, nil)
	descSent      = prometheus.NewDesc("stapes_gossip_sent_bytes_total", "Gossip bytes sent, after encryption and compression, without IP/UDP/TCP headers.", []string{"transport"}, nil)
	descRecv      = prometheus.NewDesc("stapes_gossip_received_bytes_total", "Gossip bytes received, as sent.", []string{"transport"}, nil)
	descPktSent   = prometheus.NewDesc("stapes_gossip_sent_packets_total", "Gossip UDP packets sent.", nil, nil)
	descPktRecv   = prometheus.NewDesc("stapes_gossip_received_packets_total", "Gossip UDP packets received.", nil, nil)
)

// collector reads the numbers the Cluster owns when scraped.
type collector Cluster

func (*collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descConverged, descHealth, descSent, descRecv, descPktSent, descPktRecv} {
		ch <- d
	}
}

func (col *collector) Collect(ch chan<- prometheus.Metric) {
	c := (*Cluster)(col)
	counts := map[State]int{StateAlive: 0, StateDead: 0, StateLeft: 0}
	c.mu.Lock()
	counts[StateAlive] = len(c.live)
	for id, ev := range c.gone {
		if time.Since(ev.At) > c.mc.GossipToTheDeadTime {
			delete(c.gone, id) // memberlist has forgotten it too
			continue
		}
		counts[ev.Member.State]++
	}
	c.mu.Unlock()
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), s.String())
	}
	conv := 0.0
	if c.Converged() {
		conv = 1
	}
	ch <- prometheus.MustNewConstMetric(descConverged, prometheus.GaugeValue, conv)
	ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, float64(c.ml.GetHealthScore()))
	t := c.Traffic()
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(t.UDPSent), "udp")
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(t.TCPSent), "tcp")
	ch <- prometheus.MustNewConstMetric(descRecv, prometheus.CounterValue, float64(t.UDPReceived), "udp")
	ch <- prometheus.MustNewConstMetric(descRecv, prometheus.CounterValue, float64(t.TCPReceived), "tcp")
	ch <- prometheus.MustNewConstMetric(descPktSent, prometheus.CounterValue, float64(t.PacketsSent))
	ch <- prometheus.MustNewConstMetric(descPktRecv, prometheus.CounterValue, float64(t.PacketsReceived))
}
