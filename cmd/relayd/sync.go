package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/storage"
)

// startSync runs the outbox syncer when --control-url is set; the returned
// func stops it and waits.
func startSync(o *options, st *storage.Store, reg prometheus.Registerer, log *slog.Logger) (func(), error) {
	if o.controlURL == "" {
		log.Info("no --control-url: session logs stay on this relay (no sync to controld)")
		return func() {}, nil
	}
	cred, err := os.ReadFile(o.credFile)
	if err != nil {
		return nil, fmt.Errorf("reading --node-credential-file: %w", err)
	}
	sy, err := control.NewSyncer(control.SyncConfig{Outbox: st, Relay: o.relayID, URL: o.controlURL,
		Credential: strings.TrimSpace(string(cred)), Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sy.Run(ctx)
	}()
	return func() { cancel(); <-done }, nil
}
