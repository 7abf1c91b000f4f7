package lab

import (
	"context"
	"fmt"
	"os"
	"time"
)

// helperEnv makes the test binary run helperLab instead of the tests.
const helperEnv = "STAPES_LAB_HELPER"

// helperLab is the process TestCleanupStale kills: it starts a lab and a
// process inside it, prints the lab id and that process's pid, and waits
// to be killed.
func helperLab() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, Spec{Regions: []Region{{Name: "eu"}, {Name: "us"}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sleep := l.Command(context.Background(), "eu-0", "sleep", "300")
	if err := sleep.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s %d\n", l.ID(), sleep.Process.Pid)
	time.Sleep(5 * time.Minute) // killed long before
	os.Exit(1)
}
