// Command stapes is the stapes command-line tool. Each verb (keygen, token,
// and later sim, demo, bench, probe) lives in its own file and registers
// itself; main.go only dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"text/tabwriter"
)

// A verb is one stapes subcommand. A verb's file adds it with register from
// an init function, so adding a verb never touches main.go.
type verb struct {
	name    string
	summary string // one line for `stapes help`
	usage   string // what follows "stapes <name> " in the synopsis
	// flags defines the verb's flags on fs and returns the function that
	// runs the verb once they are parsed.
	flags func(fs *flag.FlagSet) runFunc
}

// runFunc runs a verb. It returns a usageError (see usagef) for a mistake
// in the invocation, any other error for a failure.
type runFunc func(ctx context.Context, e *env) error

// env is what a running verb may use besides its flags.
type env struct {
	args   []string // positional arguments after the flags
	stdout io.Writer
	stderr io.Writer
}

// verbs holds every registered verb by name.
var verbs = map[string]verb{}

// register adds a verb. It is called from init functions only, so a
// mistake panics at start-up.
func register(v verb) {
	if v.name == "" || v.name == "help" || v.flags == nil {
		panic("stapes: invalid verb " + v.name)
	}
	if _, dup := verbs[v.name]; dup {
		panic("stapes: verb registered twice: " + v.name)
	}
	verbs[v.name] = v
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the verb failed
	exitUsage = 2 // the command line is wrong
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printVerbs(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if name == "help" && len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		printVerbs(stdout)
		return exitOK
	}
	v, ok := verbs[name]
	if !ok {
		fmt.Fprintf(stderr, "stapes: unknown verb %q\nRun 'stapes help' for the list of verbs.\n", name)
		return exitUsage
	}

	fs := flag.NewFlagSet("stapes "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports parse errors itself, once
	fs.Usage = func() {}
	runVerb := v.flags(fs)
	err := fs.Parse(args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, v, fs)
		return exitOK
	case err != nil:
		err = &usageError{err.Error()}
	default:
		err = runVerb(ctx, &env{args: fs.Args(), stdout: stdout, stderr: stderr})
	}
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "stapes: %s: interrupted\n", name)
		return exitError
	}
	fmt.Fprintf(stderr, "stapes: %s: %v\n", name, err)
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Run 'stapes %s --help' for usage.\n", name)
		return exitUsage
	}
	return exitError
}

// usageError is a mistake in how a verb was invoked.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError; run prints it with a pointer to --help and
// exits 2.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// noArgs refuses positional arguments, for verbs that take none.
func noArgs(e *env) error {
	if len(e.args) > 0 {
		return usagef("unexpected argument %q", e.args[0])
	}
	return nil
}

func printVerbs(w io.Writer) {
	fmt.Fprint(w, "stapes is the command-line tool of the stapes hearing-aid fitting relay.\n\n")
	fmt.Fprint(w, "Usage: stapes <verb> [flags]\n\nVerbs:\n")
	names := make([]string, 0, len(verbs))
	for name := range verbs {
		names = append(names, name)
	}
	slices.Sort(names)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, name := range names {
		fmt.Fprintf(tw, "  %s\t%s\n", name, verbs[name].summary)
	}
	fmt.Fprintf(tw, "  help\tshow this list, or a verb's flags (stapes help <verb>)\n")
	tw.Flush()
	fmt.Fprint(w, "\nRun 'stapes <verb> --help' for a verb's flags.\n")
}

func printUsage(w io.Writer, v verb, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: stapes %s %s\n\n%s\n\nFlags:\n", v.name, v.usage, v.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
