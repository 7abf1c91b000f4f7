package controlserver

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests      *prometheus.CounterVec   // route, code
	latency       *prometheus.HistogramVec // route
	logins        *prometheus.CounterVec   // result
	sessions      prometheus.Counter
	syncBatches   *prometheus.CounterVec // result
	syncRows      *prometheus.CounterVec // table
	syncBroken    prometheus.Counter
	syncSeconds   prometheus.Histogram
	configAdvance *prometheus.CounterVec // result
	throttled     *prometheus.CounterVec // endpoint, by
	sessionsEnded *prometheus.CounterVec // by
	jobs          *prometheus.CounterVec // kind, result
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_http_requests_total",
			Help: "API requests by route pattern and status code."}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stapes_controld_http_request_duration_seconds",
			Help: "API request latency by route pattern.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10)}, []string{"route"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_logins_total",
			Help: "Clinician logins by result (ok, bad_credentials, disabled)."}, []string{"result"}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "stapes_controld_sessions_created_total",
			Help: "Fitting sessions created."}),
		syncBatches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_sync_batches_total",
			Help: "Relay sync batches by result (ok, rejected, error)."}, []string{"result"}),
		syncRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_sync_rows_inserted_total",
			Help: "Rows inserted by relay sync, by table (replays insert none)."}, []string{"table"}),
		syncBroken: prometheus.NewCounter(prometheus.CounterOpts{Name: "stapes_controld_sync_broken_entries_total",
			Help: "Synced log entries whose audit chain did not verify (flagged, not stored as valid)."}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stapes_controld_sync_batch_duration_seconds",
			Help: "Time to verify and store one sync batch.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 12)}),
		configAdvance: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_config_advances_total",
			Help: "Applied config receipts by result (advanced, replay, conflict, skipped)."}, []string{"result"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_rate_limited_total",
			Help: "Requests refused with 429 by endpoint (login, map) and by what was limited (ip, name)."}, []string{"endpoint", "by"}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_sessions_ended_total",
			Help: "Fitting sessions ended through the API, by who ended them (clinician, operator)."}, []string{"by"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stapes_controld_jobs_total",
			Help: "Scheduled job attempts by kind and result (done, retry, failed, lost)."}, []string{"kind", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.logins, m.sessions, m.syncBatches,
			m.syncRows, m.syncBroken, m.syncSeconds, m.configAdvance, m.throttled, m.sessionsEnded, m.jobs} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}
