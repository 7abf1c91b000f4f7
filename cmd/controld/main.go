// Command controld runs the stapes control plane: the HTTP API over
// Postgres (package controlserver over package pgstore), an ops endpoint
// with /metrics, /healthz and /readyz, and `controld migrate`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/stapes-relay/stapes/control/pgstore"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "controld: %v\nRun 'controld --help' for usage.\n", err)
		return 2
	}
	log := newLogger(stderr, o.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.verb == "migrate" {
		err = migrate(ctx, o, log, stdout)
	} else {
		err = serve(ctx, o, log)
	}
	if err != nil {
		fmt.Fprintf(stderr, "controld: %v\n", err)
		return 1
	}
	return 0
}

func openStore(ctx context.Context, o *options, log *slog.Logger) (*pgstore.Store, error) {
	st, err := pgstore.Open(ctx, pgstore.Config{DSN: o.databaseURL, ReadDSN: o.readDatabaseURL,
		MaxConns: int32(o.maxConns), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--database-url: %w", err)
	}
	return st, nil
}

// migrate applies the embedded migrations and reports what it applied.
func migrate(ctx context.Context, o *options, log *slog.Logger, out io.Writer) error {
	st, err := openStore(ctx, o, log)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	if len(applied) == 0 {
		fmt.Fprintln(out, "database schema is up to date")
	}
	for _, name := range applied {
		fmt.Fprintf(out, "applied %s\n", name)
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
