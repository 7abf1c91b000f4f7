package lab

import (
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkTCPThroughRouter measures TCP bulk transfer between two hosts
// of different regions with no delay, i.e. the cost of the router and,
// in TUN mode, of the forwarder. go test -bench TCP -run ^$ ./lab/
func BenchmarkTCPThroughRouter(b *testing.B) {
	if err := Available(); err != nil {
		b.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, Spec{Regions: []Region{{Name: "eu"}, {Name: "us"}}})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ln, err := l.Listen("us", "tcp4", l.Addr("us").String()+":0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := l.DialContext(ctx, "eu", "tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	<-done
	b.StopTimer()
	s := l.Stats()
	b.ReportMetric(float64(s.Delayed)/float64(b.N), "pkts/op")
	if s.QueueFull+s.WriteErr > 0 {
		b.Logf("drops: %+v", s)
	}
}
