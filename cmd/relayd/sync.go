package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/control"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/storage"
	"github.com/stapes-relay/stapes/token"
)

// controlLink is the relay's connection to controld: the outbox syncer and
// the directory (register, heartbeat, token keys, device config).
type controlLink struct {
	sync *control.Syncer
	dir  *control.Directory
	srv  atomic.Pointer[relay.Server]
	// addrs are the addresses the directory registers; advHost is their
	// host. publish adds to addrs before start.
	addrs   map[string]string
	advHost string
}

// publish adds addresses (TURN's) to those registered with controld; call
// it before start.
func (l *controlLink) publish(more map[string]string) {
	for k, v := range more {
		l.addrs[k] = v
	}
}

// newControl prepares the link when --control-url is set (nil otherwise).
func newControl(o *options, st *storage.Store, kr *token.Keyring, listen string, reg prometheus.Registerer, log *slog.Logger) (*controlLink, error) {
	if o.controlURL == "" {
		log.Info("no --control-url: session logs stay on this relay (no sync to controld)")
		return nil, nil
	}
	raw, err := os.ReadFile(o.credFile)
	if err != nil {
		return nil, fmt.Errorf("reading --node-credential-file: %w", err)
	}
	cred := strings.TrimSpace(string(raw))
	l := &controlLink{}
	l.sync, err = control.NewSyncer(control.SyncConfig{Outbox: st, Relay: o.relayID, URL: o.controlURL,
		Credential: cred, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	adv := o.advertise
	if adv == "" {
		adv = advertised(listen)
	}
	scheme := "wss"
	addrs := map[string]string{}
	if o.plain {
		scheme = "ws"
	} else if !o.noQUIC {
		addrs["quic"] = "quic://" + adv
	}
	addrs["ws"] = scheme + "://" + adv + relay.WSPath
	l.addrs = addrs
	l.advHost, _, _ = net.SplitHostPort(adv)
	l.dir, err = control.NewDirectory(control.DirectoryConfig{URL: o.controlURL, Credential: cred, Addresses: addrs,
		Version: "dev", Keyring: kr, CacheFile: filepath.Join(o.dataDir, "keyring-cache.json"),
		Load: func() int {
			if s := l.srv.Load(); s != nil {
				return s.Load()
			}
			return 0
		},
		Draining: func() bool { s := l.srv.Load(); return s != nil && !s.Ready() },
		Sessions: func() []string {
			if s := l.srv.Load(); s != nil {
				return s.SessionIDs()
			}
			return nil
		},
		Ended: func(ids []string) {
			s := l.srv.Load()
			if s == nil {
				return
			}
			for _, id := range ids {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := s.EndSession(ctx, "", id, "control_plane"); err != nil {
					log.Warn("ending a session the control plane ended failed; next heartbeat retries", "session", id, "err", err)
				}
				cancel()
			}
		},
		Logger: log})
	if err != nil {
		return nil, err
	}
	if err := l.dir.LoadCache(); err != nil && !os.IsNotExist(err) {
		log.Warn("reading the token key cache failed", "err", err)
	}
	return l, nil
}

// start runs the syncer and the directory; the returned func stops both
// and waits.
func (l *controlLink) start(srv *relay.Server) func() {
	l.srv.Store(srv)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.sync.Run(ctx) }()
	go func() { defer wg.Done(); l.dir.Run(ctx) }()
	return func() { cancel(); wg.Wait() }
}

var _ relay.DeviceSource = (*control.Directory)(nil)
