package envflag

import (
	"flag"
	"testing"
)

func TestApply(t *testing.T) {
	t.Setenv("STAPES_DRAIN_TIMEOUT", "3s")
	t.Setenv("STAPES_MAX_CONNS", "7")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	d := fs.Duration("drain-timeout", 0, "")
	n := fs.Int("max-conns", 1, "")
	other := fs.String("other", "def", "")
	if err := Apply(fs); err != nil {
		t.Fatal(err)
	}
	if d.String() != "3s" || *n != 7 || *other != "def" {
		t.Fatalf("got %v %d %q", *d, *n, *other)
	}
	t.Setenv("STAPES_MAX_CONNS", "many")
	if err := Apply(fs); err == nil {
		t.Fatal("a bad value must be an error naming the variable")
	}
}
