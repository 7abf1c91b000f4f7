package turn

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons: requests or connections the Server turned away. Logs
// and the refusals metric share them.
const (
	refuseDraining     = "draining"      // Allocate while draining
	refuseQuotaTotal   = "quota_total"   // MaxAllocations reached
	refuseQuotaSession = "quota_session" // MaxAllocationsPerSession reached
	refuseQuotaUser    = "quota_user"    // MaxAllocationsPerUser reached
	refuseUnauthRate   = "unauth_rate"   // unauthenticated request over the rate limit
	refuseMaxConns     = "max_conns"     // TCP/TLS connection over MaxTCPConns
	refuseRelayPort    = "relay_port"    // no relayed port could be opened
	refuseBadFrame     = "bad_frame"     // TCP/TLS stream that is not TURN
)

// Drop reasons: relayed packets the Server discarded.
const (
	dropBandwidth    = "bandwidth"     // over the allocation's bandwidth cap
	dropRelaySelf    = "relay_self"    // to or from the relay's own address, not a live relayed port
	dropNoAllocation = "no_allocation" // ChannelData from a client without an allocation
	dropNoChannel    = "no_channel"    // ChannelData on an unbound channel
	dropNoPermission = "no_permission" // peer packet without a permission
	dropMalformed    = "malformed"     // ChannelData whose length does not fit
)

// Auth failure reasons.
const (
	authMalformed = "malformed"      // username not "expiry:session"
	authExpired   = "expired"        // credential expired
	authTooFar    = "expiry_too_far" // expiry beyond MaxTTL
	authEnded     = "session_ended"  // the session has ended
	authIntegrity = "integrity"      // MESSAGE-INTEGRITY failed under every secret
	authRealm     = "realm"          // another realm than ours
	authConfig    = "config"         // no secrets or no session check: fail closed
)

func authReason(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return authExpired
	case errors.Is(err, ErrExpiryTooFar):
		return authTooFar
	case errors.Is(err, ErrSessionEnded):
		return authEnded
	case errors.Is(err, ErrBadIntegrity), errors.Is(err, ErrBadPassword):
		return authIntegrity
	case errors.Is(err, ErrBadUsername), errors.Is(err, ErrBadSession):
		return authMalformed
	default:
		return authConfig
	}
}

type metrics struct {
	refusals     *prometheus.CounterVec
	peerRefusals *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	drops        *prometheus.CounterVec
	allocsTotal  prometheus.Counter
	// pre-resolved children for the per-packet paths
	dropBW, dropSelf, dropNoAlloc, dropNoChan, dropNoPerm, dropBad prometheus.Counter
	collectors                                                     []prometheus.Collector
}

func newMetrics(s *Server, reg prometheus.Registerer, labels prometheus.Labels) (*metrics, error) {
	const ns = "stapes_turn_"
	c := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Name: ns + name, Help: help, ConstLabels: labels}
	}
	g := func(name, help string) prometheus.GaugeOpts {
		return prometheus.GaugeOpts{Name: ns + name, Help: help, ConstLabels: labels}
	}
	m := &metrics{
		refusals:     prometheus.NewCounterVec(c("refusals_total", "Requests and connections refused, by reason."), []string{"reason"}),
		peerRefusals: prometheus.NewCounterVec(c("peer_refusals_total", "Permissions (CreatePermission, ChannelBind, Connect) refused by the peer policy, by reason."), []string{"reason"}),
		authFailures: prometheus.NewCounterVec(c("auth_failures_total", "Failed authentications, by reason."), []string{"reason"}),
		drops:        prometheus.NewCounterVec(c("dropped_packets_total", "Relayed packets dropped, by reason."), []string{"reason"}),
		allocsTotal:  prometheus.NewCounter(c("allocations_created_total", "Allocations created.")),
	}
	m.dropBW = m.drops.WithLabelValues(dropBandwidth)
	m.dropSelf = m.drops.WithLabelValues(dropRelaySelf)
	m.dropNoAlloc = m.drops.WithLabelValues(dropNoAllocation)
	m.dropNoChan = m.drops.WithLabelValues(dropNoChannel)
	m.dropNoPerm = m.drops.WithLabelValues(dropNoPermission)
	m.dropBad = m.drops.WithLabelValues(dropMalformed)
	for _, r := range []string{refuseDraining, refuseQuotaTotal, refuseQuotaSession, refuseQuotaUser, refuseUnauthRate, refuseMaxConns, refuseRelayPort, refuseBadFrame} {
		m.refusals.WithLabelValues(r)
	}
	for _, r := range []string{authMalformed, authExpired, authTooFar, authEnded, authIntegrity, authRealm, authConfig} {
		m.authFailures.WithLabelValues(r)
	}
	dir := func(name, help, d string, f func(t *totals) uint64) prometheus.Collector {
		o := c(name, help)
		o.ConstLabels = prometheus.Labels{"direction": d}
		for k, v := range labels {
			o.ConstLabels[k] = v
		}
		return prometheus.NewCounterFunc(o, func() float64 { t := s.totals(); return float64(f(&t)) })
	}
	gauge := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(g(name, help), func() float64 { return float64(f()) })
	}
	m.collectors = []prometheus.Collector{
		m.refusals, m.peerRefusals, m.authFailures, m.drops, m.allocsTotal,
		dir("relayed_bytes_total", "Relayed payload bytes, by direction (to_peer: client to peer).", "to_peer", func(t *totals) uint64 { return t.bytesTo }),
		dir("relayed_bytes_total", "Relayed payload bytes, by direction (to_peer: client to peer).", "from_peer", func(t *totals) uint64 { return t.bytesFrom }),
		dir("relayed_packets_total", "Relayed packets, by direction (to_peer: client to peer).", "to_peer", func(t *totals) uint64 { return t.pktsTo }),
		dir("relayed_packets_total", "Relayed packets, by direction (to_peer: client to peer).", "from_peer", func(t *totals) uint64 { return t.pktsFrom }),
		gauge("allocations", "Live allocations.", s.allocCount),
		gauge("sessions", "Sessions with live allocations.", s.sessionCount),
		gauge("permissions", "Live permissions.", s.permissions.Load),
		gauge("channels", "Live channel bindings.", s.channels.Load),
		gauge("tcp_connections", "Open TCP and TLS client connections.", s.tcpConns.Load),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range m.collectors {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("turn metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, col := range m.collectors {
		reg.Unregister(col)
	}
}
