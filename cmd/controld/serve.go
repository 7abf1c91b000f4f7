package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stapes-relay/stapes/control/controlserver"
	"github.com/stapes-relay/stapes/control/pgstore"
	"github.com/stapes-relay/stapes/turn"
	"golang.org/x/sync/errgroup"
)

// serve runs the API and ops servers until ctx ends (SIGTERM, SIGINT) or
// one of them fails, then shuts down gracefully.
func serve(ctx context.Context, o *options, log *slog.Logger) error {
	secret, err := loadSecret(o.secretFile, log)
	if err != nil {
		return err
	}
	opTok, err := loadOperatorToken(o.operatorFile)
	if err != nil {
		return err
	}
	if opTok == "" {
		log.Info("no --operator-token-file: the operator API is off")
	}
	var turnSecrets [][]byte
	if o.turnSecretFile != "" {
		if turnSecrets, err = turn.LoadSecrets(o.turnSecretFile); err != nil {
			return fmt.Errorf("--turn-secret-file: %w", err)
		}
	}
	st, err := openStore(ctx, o, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if o.migrate {
		if _, err := st.Migrate(ctx); err != nil {
			return fmt.Errorf("--migrate: %w", err)
		}
	} else if err := ping(ctx, st); err != nil {
		// Serve anyway: /readyz says not ready until Postgres answers.
		log.Warn("Postgres does not answer yet; serving, not ready", "err", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := controlserver.New(controlserver.Config{Store: st, Secret: secret, OperatorToken: opTok, Logger: log,
		Registerer: reg, SessionTokenTTL: o.sessionTTL, APITokenTTL: o.apiTokenTTL, RelayLiveness: o.relayLiveness,
		LoginPerIP: o.loginPerIP, LoginPerName: o.loginPerName, MapPerIP: o.mapPerIP, PlacementMaxAge: o.placementMaxAge,
		TURNSecrets: turnSecrets})
	if err != nil {
		return err
	}
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if kid, err := srv.EnsureSigningKey(kctx); err != nil {
		log.Warn("no signing key yet; one is made when the first session needs it", "err", err)
	} else {
		log.Info("signing key", "kid", kid)
	}
	cancel()
	tlsConf, err := loadTLS(o, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on --listen %s: %w", o.listen, err)
	}
	opsLn, err := net.Listen("tcp", o.opsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listening on --ops %s: %w", o.opsAddr, err)
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	api := &http.Server{Handler: srv.Handler(), TLSConfig: tlsConf, ErrorLog: errLog,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	ops := &http.Server{Handler: opsHandler(reg, srv.Handler()), ErrorLog: errLog, ReadHeaderTimeout: 5 * time.Second}

	jobsCtx, stopJobs := context.WithCancel(context.Background())
	defer stopJobs()
	failed := make(chan error, 2) // the first server that stops on its own
	var g errgroup.Group
	g.Go(func() error {
		var err error
		if tlsConf != nil {
			err = api.ServeTLS(ln, "", "")
		} else {
			err = api.Serve(ln)
		}
		if err = serveErr("API", err); err != nil {
			failed <- err
		}
		return err
	})
	g.Go(func() error {
		err := serveErr("ops", ops.Serve(opsLn))
		if err != nil {
			failed <- err
		}
		return err
	})
	g.Go(func() error { srv.RunJobs(jobsCtx); return nil })
	scheme := "https"
	if tlsConf == nil {
		scheme = "http"
	}
	log.Info("controld ready", "api", scheme+"://"+ln.Addr().String(), "ops", opsLn.Addr().String())

	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTimeout)
	case err := <-failed:
		log.Error("a server failed; shutting down", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := api.Shutdown(sctx); err != nil {
		log.Warn("API shutdown ended early; closing", "err", err)
		api.Close()
	}
	ops.Close()
	stopJobs()
	err = g.Wait()
	log.Info("controld stopped")
	return err
}

// serveErr turns a Serve result into a failure, or nil for a shutdown.
func serveErr(what string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s server: %w", what, err)
}

func ping(ctx context.Context, st *pgstore.Store) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return st.Ping(ctx)
}

// opsHandler serves /metrics, and /healthz and /readyz from the API.
func opsHandler(reg *prometheus.Registry, api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /healthz", api)
	mux.Handle("GET /readyz", api)
	return mux
}
