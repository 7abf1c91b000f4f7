package controlserver

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/turn"
)

// Server is controld's HTTP API. Its Handler is safe for concurrent use.
type Server struct {
	cfg    Config
	st     *pgstore.Store
	log    *slog.Logger
	keys   *keyStore
	tokens *apiTokens
	m      *metrics
	limits *limiters
	pubMap publicMapCache
	mux    *http.ServeMux
	routes []string          // every registered pattern, "METHOD /path"
	turn   *turn.Credentials // mints TURN credentials; nil without Config.TURNSecrets

	dummyOnce sync.Once
	dummyHash string // checked against when a login names no account, so timing does not tell

	syncBufs chan *syncBuffers // idle buffers of sync batches, for reuse
}

// New validates cfg and returns a Server. It does not contact Postgres;
// call EnsureSigningKey at start so the first session does not pay for
// creating a key.
func New(cfg Config) (*Server, error) {
	cfg.EnsureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "controld")
	keys, err := newKeyStore(cfg.Store, cfg.Secret, cfg.KeyCacheTTL, cfg.Now, log)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		st:     cfg.Store,
		log:    log,
		keys:   keys,
		tokens: newAPITokens(cfg.Secret),
		m:      m,
		limits: newLimiters(&cfg),
		mux:    http.NewServeMux(),
		// A free list rather than a sync.Pool: a batch allocates enough
		// for a GC cycle to pass between two, which empties a Pool.
		syncBufs: make(chan *syncBuffers, maxIdleSyncBuffers),
	}
	if len(cfg.TURNSecrets) > 0 {
		s.turn = &turn.Credentials{Secrets: cfg.TURNSecrets, Now: cfg.Now, MaxTTL: 24 * time.Hour}
	}
	s.routeAll()
	return s, nil
}

// Handler returns the API's handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// serveHTTP routes r; requests no route takes get a JSON 404 or 405
// instead of the mux's plain text.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	cw := &captureWriter{header: http.Header{}}
	h.ServeHTTP(cw, r)
	if allow := cw.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	switch cw.status {
	case http.StatusMethodNotAllowed:
		writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed here (allowed: %s)", r.Method, cw.header.Get("Allow")))
	case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		for k, v := range cw.header {
			w.Header()[k] = v
		}
		w.WriteHeader(cw.status)
	default:
		writeError(w, notFound("no such endpoint; see /openapi.json"))
	}
}

// captureWriter records what the mux's fallback handlers answer.
type captureWriter struct {
	header http.Header
	status int
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return len(b), nil
}

// EnsureSigningKey makes sure a signing key this controld can sign with
// exists in Postgres, creating one if there is none (the first start of a
// deployment, or every key revoked), and returns its kid.
func (s *Server) EnsureSigningKey(ctx context.Context) (string, error) {
	return s.keys.ensure(ctx)
}

// handlerFunc is a handler that returns its error answer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle registers h under pattern with the request plumbing every route
// shares: a request id, metrics by route and status, the error answer.
func (s *Server) handle(pattern string, h handlerFunc) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-Id")
		if !validRequestID(rid) {
			rid = rand.Text()[:16]
		}
		w.Header().Set("X-Request-Id", rid)
		sw := &statusWriter{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, rid))
		if err := h(sw, r); err != nil {
			writeError(sw, err)
		}
		s.m.observe(pattern, sw.code(), time.Since(start))
		s.log.DebugContext(r.Context(), "request", "route", pattern, "status", sw.code(),
			"duration", time.Since(start).Round(time.Microsecond), "request_id", rid)
	})
}

type requestIDKey struct{}

// requestID returns the request's correlation id, for log lines.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// routeAll registers every route. openapi.json documents each one
// (TestOpenAPIMatchesRoutes).
func (s *Server) routeAll() {
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.handle("GET /openapi.json", s.openAPI)

	s.handle("POST /v1/login", s.login)
	s.handle("POST /v1/logout", s.asClinician(s.logout))
	s.handle("GET /v1/patients", s.asClinician(s.patients))
	s.handle("POST /v1/sessions", s.asClinician(s.createSession))
	s.handle("POST /v1/sessions/{id}/end", s.asClinician(s.endSession))
	s.handle("POST /v1/sessions/{id}/tokens", s.asClinician(s.sessionTokens))
	s.handle("GET /v1/map", s.publicMap)
	s.handle("GET /v1/push/registrations", s.asPatient(s.listPush))
	s.handle("PUT /v1/push/registrations/{installation}", s.asPatient(s.putPush))
	s.handle("DELETE /v1/push/registrations/{installation}", s.asPatient(s.deletePush))
	s.handle("PUT /v1/placement/rtts", s.asPatient(s.putPatientRTTs))

	s.handle("GET /v1/operator/tenants", s.asOperator(s.listTenants))
	s.handle("POST /v1/operator/tenants", s.asOperator(s.createTenant))
	s.handle("POST /v1/operator/tenants/{tenant}/clinicians", s.asOperator(s.createClinician))
	s.handle("POST /v1/operator/tenants/{tenant}/patients", s.asOperator(s.createPatient))
	s.handle("POST /v1/operator/tenants/{tenant}/devices", s.asOperator(s.createDevice))
	s.handle("PUT /v1/operator/tenants/{tenant}/devices/{serial}/patient", s.asOperator(s.assignDevice))
	s.handle("POST /v1/operator/tenants/{tenant}/care", s.asOperator(s.addCare))
	s.handle("DELETE /v1/operator/tenants/{tenant}/care/{clinician}/{patient}", s.asOperator(s.removeCare))
	s.handle("PUT /v1/operator/tenants/{tenant}/models/{model}/limits/{parameter}", s.asOperator(s.setModelLimit))
	s.handle("PUT /v1/operator/tenants/{tenant}/flags/{flag}", s.asOperator(s.setFlag))
	s.handle("POST /v1/operator/tenants/{tenant}/sessions/{session}/end", s.asOperator(s.operatorEndSession))
	s.handle("GET /v1/operator/tenants/{tenant}/jobs", s.asOperator(s.listJobs))
	s.handle("POST /v1/operator/tenants/{tenant}/jobs", s.asOperator(s.createJob))
	s.handle("POST /v1/operator/tenants/{tenant}/jobs/{job}/cancel", s.asOperator(s.cancelJob))
	s.handle("GET /v1/operator/relays", s.asOperator(s.listRelays))
	s.handle("POST /v1/operator/relays", s.asOperator(s.createRelay))
	s.handle("GET /v1/operator/signing-keys", s.asOperator(s.listSigningKeys))
	s.handle("POST /v1/operator/signing-keys", s.asOperator(s.createSigningKey))
	s.handle("POST /v1/operator/signing-keys/{kid}/revoke", s.asOperator(s.revokeSigningKey))

	s.handle("POST /v1/relay/register", s.asRelay(s.registerRelay))
	s.handle("POST /v1/relay/heartbeat", s.asRelay(s.heartbeat))
	s.handle("GET /v1/relay/keys", s.asRelay(s.relayKeys))
	s.handle("GET /v1/relay/map", s.asRelay(s.relayMap))
	s.handle("GET /v1/relay/devices/{tenant}/{serial}/config", s.asRelay(s.deviceConfig))
	s.handle("GET /v1/relay/sessions/{tenant}/{session}", s.asRelay(s.relaySession))
	s.handle("POST /v1/relay/sync", s.asRelay(s.sync))
}
