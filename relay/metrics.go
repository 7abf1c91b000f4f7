package relay

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Drop reasons, shared by logs and the drops metric label.
const (
	dropQueueFull    = "queue_full"    // an ephemeral frame met a full per-connection queue
	dropSlowConsumer = "slow_consumer" // a peer let its reply queue fill and was disconnected
	dropMaxConns     = "max_conns"     // a connection arrived at the connection cap
	dropAcceptRate   = "accept_rate"   // a connection arrived faster than the accept rate
)

type metrics struct {
	sessions      prometheus.Gauge
	conns         *prometheus.GaugeVec
	framesIn      *prometheus.CounterVec
	framesOut     *prometheus.CounterVec
	bytesIn       *prometheus.CounterVec
	bytesOut      *prometheus.CounterVec
	messagesIn    *prometheus.CounterVec
	drops         *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	rejections    *prometheus.CounterVec
	errorsSent    *prometheus.CounterVec
	resumes       *prometheus.CounterVec
	commitSeconds prometheus.Histogram
	commitBatch   prometheus.Histogram
	commitErrors  prometheus.Counter
	degraded      prometheus.Counter
	takeovers     prometheus.Counter
	fenced        prometheus.Counter
	staleRefused  prometheus.Counter
	replicated    prometheus.Counter
	fetched       prometheus.Counter
	catchUps      prometheus.Counter
	forwarded     prometheus.Gauge
	forwardFails  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	const ns = "stapes_relay_"
	m := &metrics{
		sessions:   prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "sessions", Help: "Fitting sessions loaded on this relay."}),
		conns:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "connections", Help: "Open client connections."}, []string{"transport"}),
		framesIn:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "frames_received_total", Help: "Frames received from clients."}, []string{"transport", "type"}),
		framesOut:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "frames_sent_total", Help: "Frames sent to clients."}, []string{"transport", "type"}),
		bytesIn:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "received_bytes_total", Help: "Frame bytes received from clients."}, []string{"transport"}),
		bytesOut:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "sent_bytes_total", Help: "Frame bytes sent to clients, by class."}, []string{"transport", "class"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "messages_received_total", Help: "SEND frames received, by message kind."}, []string{"transport", "kind"}),
		drops:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "drops_total", Help: "Frames dropped or connections shed, by reason."}, []string{"reason"}),
		refusals:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "admission_refusals_total", Help: "HELLOs refused, by error code."}, []string{"code"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "send_rejections_total", Help: "SENDs and ACKs rejected, by error code."}, []string{"code"}),
		errorsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "fatal_errors_total", Help: "Connections ended with a fatal ERROR, by code."}, []string{"code"}),
		resumes:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "resumes_total", Help: "Connections that resumed a session from a position."}, []string{"transport"}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: ns + "commit_seconds", Help: "Durable group-commit latency (store commit with fsync).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: ns + "commit_batch_entries", Help: "Log entries per session group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "commit_errors_total", Help: "Failed durable commits."}),
		degraded:     prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "degraded_commits_total", Help: "Commit batches acknowledged without a replica (PERSISTED flagged degraded)."}),
		takeovers:    prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "takeovers_total", Help: "Sessions this relay took over from a home that did not answer."}),
		fenced:       prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "fenced_sessions_total", Help: "Sessions this relay gave up because another relay owns them with a newer epoch."}),
		staleRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "stale_replications_refused_total", Help: "Replication requests refused for an older epoch."}),
		replicated:   prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "replicated_entries_total", Help: "Log entries stored as a replica."}),
		fetched:      prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "fetched_entries_total", Help: "Log entries fetched back from a replica when loading a session."}),
		forwarded: prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "forwarded_connections",
			Help: "Client connections this relay serves through a relay-to-relay link to their session's home."}),
		forwardFails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "forward_failures_total",
			Help: "Relay-to-relay forwards that could not start or were cut, by reason."}, []string{"reason"}),
		catchUps: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "replica_catchups_total", Help: "Replicas brought up to date with a session's earlier entries."}),
	}
	for _, r := range []string{dropQueueFull, dropSlowConsumer, dropMaxConns, dropAcceptRate} {
		m.drops.WithLabelValues(r)
	}
	for _, r := range []string{forwardNoLink, forwardLost} {
		m.forwardFails.WithLabelValues(r)
	}
	for _, t := range []string{"ws", "quic", transportRelay} {
		m.resumes.WithLabelValues(t)
		m.conns.WithLabelValues(t)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sessions, m.conns, m.framesIn, m.framesOut, m.bytesIn, m.bytesOut,
		m.messagesIn, m.drops, m.refusals, m.rejections, m.errorsSent, m.resumes, m.commitSeconds, m.commitBatch, m.commitErrors,
		m.degraded, m.takeovers, m.fenced, m.staleRefused, m.replicated, m.fetched, m.catchUps, m.forwarded, m.forwardFails,
		linkCollector{s}} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) drop(reason string) { m.drops.WithLabelValues(reason).Inc() }

func (m *metrics) frameIn(transport string, t wire.Type, n int) {
	m.framesIn.WithLabelValues(transport, typeLabel(t)).Inc()
	m.bytesIn.WithLabelValues(transport).Add(float64(n))
}

func (m *metrics) frameOut(transport string, t wire.Type, cl wire.Class, n int) {
	m.framesOut.WithLabelValues(transport, typeLabel(t)).Inc()
	m.bytesOut.WithLabelValues(transport, cl.String()).Add(float64(n))
}

func (m *metrics) messageIn(transport string, k wire.Kind) {
	m.messagesIn.WithLabelValues(transport, k.String()).Inc()
}

// typeLabel bounds label cardinality: unknown types share one label.
func typeLabel(t wire.Type) string {
	if t.Known() {
		return t.String()
	}
	return "unknown"
}
