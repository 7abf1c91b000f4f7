package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/stapes-relay/stapes/lab"
)

func init() {
	register(verb{
		name:    "lab",
		summary: "run a network lab: regions of network namespaces with delays between them (root)",
		usage: "up|down|list [flags]\n\n" +
			"  up     build a lab and keep it until Ctrl-C, e.g.\n" +
			"         stapes lab up --regions eu,us,ap --delay eu-us=40ms,eu-ap=120ms,us-ap=90ms\n" +
			"  down   remove labs whose creating process has ended (stale labs)\n" +
			"  list   show the labs of running processes\n\n" +
			"Run 'stapes lab up --help' for up's flags. Every host is a network namespace;\n" +
			"run a program on one with: ip netns exec <namespace> <program>",
		flags: func(fs *flag.FlagSet) runFunc { return runLab },
	})
}

func runLab(ctx context.Context, e *env) error {
	if len(e.args) == 0 {
		return usagef("a command is required: up, down or list")
	}
	switch sub, args := e.args[0], e.args[1:]; sub {
	case "up":
		return labUp(ctx, e, args)
	case "down", "list":
		fs := flag.NewFlagSet("stapes lab "+sub, flag.ContinueOnError)
		if done, err := parseSub(e, fs, "lab "+sub, "", args); done || err != nil {
			return err
		}
		if err := lab.Available(); err != nil {
			return err
		}
		if sub == "down" {
			return labDown(ctx, e)
		}
		return labList(e)
	default:
		return usagef("unknown command %q (commands: up, down, list)", sub)
	}
}

// parseSub parses a lab command's flags; done is set when it printed help.
func parseSub(e *env, fs *flag.FlagSet, name, usage string, args []string) (done bool, err error) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(e.stdout, "Usage: stapes %s %s\n\nFlags:\n", name, usage)
			fs.SetOutput(e.stdout)
			fs.PrintDefaults()
			return true, nil
		}
		return false, usagef("%s: %v", strings.TrimPrefix(name, "lab "), err)
	}
	if fs.NArg() > 0 {
		return false, usagef("%s: unexpected argument %q", strings.TrimPrefix(name, "lab "), fs.Arg(0))
	}
	return false, nil
}

func labUp(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("stapes lab up", flag.ContinueOnError)
	regions := fs.String("regions", "", "comma-separated `REGIONS`, each NAME or NAME:HOSTS, e.g. eu:2,us,ap (required)")
	delays := fs.String("delay", "", "one-way `DELAYS` between regions, both ways: A-B=DELAY[/JITTER[/LOSS%]],...\n"+
		"e.g. eu-us=40ms,eu-ap=120ms/5ms,us-ap=90ms/0s/0.5%; A-A sets the delay within a region;\n"+
		"pairs not given have none")
	name := fs.String("name", "", "lab `ID` in namespace names stlab-ID-HOST: 1-12 of [a-z0-9] (default random)")
	ipv6 := fs.Bool("ipv6", false, "give every host an IPv6 address (fd77::/48) too")
	delayer := fs.String("delayer", "auto", "how to delay: netem, tun (a forwarder in this process) or auto (netem if the kernel has it)")
	if done, err := parseSub(e, fs, "lab up", "--regions R[,R...] [--delay A-B=D,...] [--name ID] [--ipv6] [--delayer auto|netem|tun]", args); done || err != nil {
		return err
	}
	if *regions == "" {
		return usagef("up: --regions is required")
	}
	spec := lab.Spec{Name: *name, IPv6: *ipv6}
	var err error
	if spec.Regions, err = lab.ParseRegions(*regions); err != nil {
		return usagef("up: --regions: %v", specMsg(err))
	}
	if spec.Links, err = lab.ParseLinks(*delays); err != nil {
		return usagef("up: --delay: %v", specMsg(err))
	}
	switch *delayer {
	case "auto":
	case "netem":
		spec.Delayer = lab.DelayerNetem
	case "tun":
		spec.Delayer = lab.DelayerTUN
	default:
		return usagef("up: --delayer %q: want auto, netem or tun", *delayer)
	}
	if err := spec.Validate(); err != nil {
		return usagef("up: %v", specMsg(err))
	}
	if err := lab.Available(); err != nil {
		return err
	}
	if removed, err := lab.CleanupStale(ctx); err != nil {
		fmt.Fprintf(e.stderr, "stapes: lab up: removing stale labs: %v\n", err)
	} else if len(removed) > 0 {
		fmt.Fprintf(e.stdout, "removed stale labs: %s\n", strings.Join(removed, ", "))
	}

	l, err := lab.New(ctx, spec)
	if err != nil {
		return err
	}
	printLab(e.stdout, l, spec.Regions)
	<-ctx.Done()
	if err := l.Close(); err != nil {
		return fmt.Errorf("removing lab %s: %w", l.ID(), err)
	}
	fmt.Fprintf(e.stdout, "lab %s removed\n", l.ID())
	return nil
}

// specMsg is a spec error's message without the package's prefix.
func specMsg(err error) string {
	return strings.TrimPrefix(err.Error(), lab.ErrSpec.Error()+": ")
}

func printLab(w io.Writer, l *lab.Lab, regions []lab.Region) {
	fmt.Fprintf(w, "lab %s is up (delays by %s)\n\n", l.ID(), l.Delayer())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tREGION\tADDRESS\tNAMESPACE")
	hosts := l.Hosts()
	for _, h := range hosts {
		addr := h.Addr.String()
		if h.Addr6.IsValid() {
			addr += " " + h.Addr6.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name, h.Region, addr, h.Netns)
	}
	tw.Flush()

	fmt.Fprint(w, "\nOne-way delays (row to column; a round trip takes twice):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, r := range regions {
		fmt.Fprintf(tw, "%s\t", r.Name)
	}
	fmt.Fprintln(tw)
	for _, a := range regions {
		fmt.Fprintf(tw, "%s\t", a.Name)
		for _, b := range regions {
			k, _ := l.Link(a.Name, b.Name)
			s := k.Delay.String()
			if k.Jitter > 0 {
				s += "±" + k.Jitter.String()
			}
			if k.Loss > 0 {
				s += fmt.Sprintf(" %g%%", k.Loss*100)
			}
			fmt.Fprintf(tw, "%s\t", s)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	first, last := hosts[0], hosts[len(hosts)-1]
	fmt.Fprintf(w, "\nRun a program on a host:  ip netns exec %s PROGRAM [ARGS]\n", first.Netns)
	fmt.Fprintf(w, "For example:              ip netns exec %s ping %s\n", first.Netns, last.Addr)
	fmt.Fprint(w, "Press Ctrl-C to stop the lab and remove it.\n")
}

func labDown(ctx context.Context, e *env) error {
	removed, err := lab.CleanupStale(ctx)
	if len(removed) > 0 {
		fmt.Fprintf(e.stdout, "removed stale labs: %s\n", strings.Join(removed, ", "))
	} else if err == nil {
		fmt.Fprintln(e.stdout, "no stale labs")
	}
	if err != nil {
		return err
	}
	live, err := lab.Live()
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(live)) {
		fmt.Fprintf(e.stdout, "lab %s is still running (pid %d); stop it with Ctrl-C where it runs, or kill %d\n", id, live[id], live[id])
	}
	return nil
}

func labList(e *env) error {
	live, err := lab.Live()
	if err != nil {
		return err
	}
	if len(live) == 0 {
		fmt.Fprintln(e.stdout, "no labs running")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LAB\tPID\tROUTER NAMESPACE")
	for _, id := range slices.Sorted(maps.Keys(live)) {
		fmt.Fprintf(tw, "%s\t%d\tstlab-%s-router\n", id, live[id], id)
	}
	return tw.Flush()
}
