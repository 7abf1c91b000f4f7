package lab_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/stapes-relay/stapes/lab"
)

// A lab of three regions, a relay process started on the eu host, a
// client in us dialing it, and a delay changed at run time. (Needs root;
// not run by go test.)
func Example() {
	ctx := context.Background()
	if err := lab.Available(); err != nil {
		log.Fatal(err) // in a test: t.Skip(err)
	}
	l, err := lab.New(ctx, lab.Spec{
		Regions: []lab.Region{{Name: "eu"}, {Name: "us"}, {Name: "ap"}},
		Links: []lab.Link{
			{A: "eu", B: "us", Delay: 40 * time.Millisecond},
			{A: "eu", B: "ap", Delay: 120 * time.Millisecond},
			{A: "us", B: "ap", Delay: 90 * time.Millisecond},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close() // removes namespaces, links and anything still running in them

	// A child process on eu-0 (ip netns exec stlab-<id>-eu-0 relayd ...).
	relay := l.Command(ctx, "eu-0", "relayd", "--listen", l.Addr("eu-0").String()+":8443")
	if err := relay.Start(); err != nil {
		log.Fatal(err)
	}
	defer relay.Wait()

	// An in-process client on us-0: 80 ms round trips to eu-0.
	c, err := l.DialContext(ctx, "us-0", "tcp", l.Addr("eu-0").String()+":8443")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// eu and us move apart: 100 ms round trips from now on.
	if err := l.SetDelay("eu", "us", 50*time.Millisecond); err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Addr("eu-0"), l.Addr("us-0"))
}
