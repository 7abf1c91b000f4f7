// Package envflag sets command-line flags from environment variables, so
// every binary accepts STAPES_<FLAG> (dashes as underscores) for each flag.
// Command-line flags parsed afterwards win. Standard library only.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Name is the environment variable for a flag: STAPES_<FLAG>.
func Name(flagName string) string {
	return "STAPES_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets every flag of fs whose variable is present.
func Apply(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := Name(f.Name)
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", name, e)
			}
		}
	})
	return err
}

// Parse applies the environment to fs, then parses args. On --help it
// prints head and the flag defaults to out and returns flag.ErrHelp.
// Positional arguments are refused.
func Parse(fs *flag.FlagSet, args []string, out io.Writer, head string) error {
	if err := Apply(fs); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(out, head)
			fs.SetOutput(out)
			fs.PrintDefaults()
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
