package lab

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Forwarder limits.
const (
	bufSize   = 2048  // bytes per packet buffer; the TUN device's MTU is 1500
	maxQueued = 16384 // packets held at once, all pairs together (32 MiB of buffers)
	maxBatch  = 256   // packets written per pass of the writer
)

// DropReason says why the forwarder dropped a packet.
type DropReason string

// Drop reasons.
const (
	DropLoss      DropReason = "loss"        // the link's Loss said so
	DropQueueFull DropReason = "queue_full"  // maxQueued packets were already held
	DropWrite     DropReason = "write_error" // the TUN device refused the packet
)

// Stats counts what the TUN forwarder did. In netem mode it stays zero.
type Stats struct {
	Delayed   uint64 // packets between lab hosts, held for their pair's delay
	Passed    uint64 // other packets, written back at once
	Loss      uint64 // dropped for DropLoss
	QueueFull uint64 // dropped for DropQueueFull
	WriteErr  uint64 // dropped for DropWrite
}

// packetDev is the TUN device as the forwarder sees it: one IP packet per
// Read and Write.
type packetDev interface {
	io.Reader
	io.Writer
}

// packet is one held packet.
type packet struct {
	buf *[bufSize]byte
	n   int
	due time.Duration // since forwarder.start
}

// fifo is one region pair's queue. Its due times never decrease, so its
// head is always the next of the pair to leave and packets stay in order.
type fifo struct {
	pkts []packet
	head int
}

func (q *fifo) len() int      { return len(q.pkts) - q.head }
func (q *fifo) peek() *packet { return &q.pkts[q.head] }
func (q *fifo) tail() *packet { return &q.pkts[len(q.pkts)-1] }

func (q *fifo) push(p packet) {
	if q.head > 0 && q.head == len(q.pkts) {
		q.pkts, q.head = q.pkts[:0], 0
	} else if q.head > 64 && q.head > len(q.pkts)/2 {
		n := copy(q.pkts, q.pkts[q.head:])
		clear(q.pkts[n:])
		q.pkts, q.head = q.pkts[:n], 0
	}
	q.pkts = append(q.pkts, p)
}

func (q *fifo) pop() packet {
	p := q.pkts[q.head]
	q.pkts[q.head] = packet{}
	q.head++
	return p
}

// forwarder reads IP packets from the router's TUN device, holds each for
// the one-way delay of its (source region, destination region) pair, and
// writes it back. One goroutine reads and classifies, one writes; neither
// starts a goroutine per packet.
type forwarder struct {
	dev   packetDev
	n     int // regions
	start time.Time
	wake  chan struct{} // cap 1: the writer should look again
	done  chan struct{}
	wg    sync.WaitGroup
	pool  sync.Pool // *[bufSize]byte

	delayed, passed, loss, full, writeErr atomic.Uint64

	mu       sync.Mutex // guards the fields below
	links    []Link     // by pair, src*n+dst
	queues   []fifo     // by pair
	active   []int      // pairs whose queue is not empty
	queued   int        // packets in all queues
	nextWake time.Duration
	rng      *rand.Rand
}

const never = time.Duration(1<<63 - 1)

func newForwarder(dev packetDev, regions int) *forwarder {
	f := &forwarder{
		dev:      dev,
		n:        regions,
		start:    time.Now(),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		links:    make([]Link, regions*regions),
		queues:   make([]fifo, regions*regions),
		nextWake: never,
		rng:      rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	f.pool.New = func() any { return new([bufSize]byte) }
	return f
}

// setLink sets the path from region src to region dst.
func (f *forwarder) setLink(src, dst int, l Link) {
	f.mu.Lock()
	f.links[src*f.n+dst] = l
	f.mu.Unlock()
}

// run starts the reader and the writer.
func (f *forwarder) run() {
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.readLoop() }()
	go func() { defer f.wg.Done(); f.writeLoop() }()
}

// stop ends the writer and waits for both goroutines; the caller closes
// the device first, which ends the reader. Held packets are dropped.
func (f *forwarder) stop() {
	close(f.done)
	f.wg.Wait()
}

func (f *forwarder) stats() Stats {
	return Stats{
		Delayed:   f.delayed.Load(),
		Passed:    f.passed.Load(),
		Loss:      f.loss.Load(),
		QueueFull: f.full.Load(),
		WriteErr:  f.writeErr.Load(),
	}
}

func (f *forwarder) now() time.Duration { return time.Since(f.start) }

// region returns the region index of a lab host address, or -1.
func (f *forwarder) region(a []byte) int {
	p := Prefix.Addr().As4()
	if a[0] != p[0] || a[1] != p[1] || a[2] == 0 || int(a[2]) > f.n {
		return -1
	}
	return int(a[2]) - 1
}

// region6 returns the region index of a lab host's IPv6 address, or -1.
func (f *forwarder) region6(a []byte) int {
	p := Prefix6.Addr().As16()
	if [6]byte(a[:6]) != [6]byte(p[:6]) {
		return -1
	}
	r := int(a[6])<<8 | int(a[7])
	if r == 0 || r > f.n {
		return -1
	}
	return r - 1
}

// pair returns the pair index of an IP packet between two lab hosts, or -1.
func (f *forwarder) pair(pkt []byte) int {
	src, dst := -1, -1
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		src, dst = f.region(pkt[12:16]), f.region(pkt[16:20])
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		src, dst = f.region6(pkt[8:24]), f.region6(pkt[24:40])
	}
	if src < 0 || dst < 0 {
		return -1
	}
	return src*f.n + dst
}

func (f *forwarder) readLoop() {
	for {
		buf := f.pool.Get().(*[bufSize]byte)
		n, err := f.dev.Read(buf[:])
		if err != nil {
			f.pool.Put(buf)
			if errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			select {
			case <-f.done:
				return
			default:
			}
			time.Sleep(time.Millisecond) // a transient error; do not spin
			continue
		}
		p := f.pair(buf[:n])
		if p < 0 {
			f.passed.Add(1)
			f.write(buf, n)
			continue
		}
		f.enqueue(p, packet{buf: buf, n: n})
	}
}

// enqueue holds pkt on pair p's queue until its due time, or drops it.
func (f *forwarder) enqueue(p int, pkt packet) {
	f.mu.Lock()
	l := f.links[p]
	if l.Loss > 0 && f.rng.Float64() < l.Loss {
		f.mu.Unlock()
		f.loss.Add(1)
		f.pool.Put(pkt.buf)
		return
	}
	if f.queued >= maxQueued {
		f.mu.Unlock()
		f.full.Add(1)
		f.pool.Put(pkt.buf)
		return
	}
	d := l.Delay
	if l.Jitter > 0 {
		d += time.Duration(f.rng.Int64N(int64(2*l.Jitter)+1)) - l.Jitter
		d = max(d, 0)
	}
	pkt.due = f.now() + d
	q := &f.queues[p]
	if q.len() > 0 {
		pkt.due = max(pkt.due, q.tail().due) // never overtake the pair's earlier packets
	} else {
		f.active = append(f.active, p)
	}
	q.push(pkt)
	f.queued++
	signal := pkt.due < f.nextWake
	if signal {
		f.nextWake = pkt.due
	}
	f.mu.Unlock()
	f.delayed.Add(1)
	if signal {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

func (f *forwarder) writeLoop() {
	timer := time.NewTimer(never)
	defer timer.Stop()
	batch := make([]packet, 0, maxBatch)
	for {
		f.mu.Lock()
		now := f.now()
		next := never
		for i := 0; i < len(f.active); {
			q := &f.queues[f.active[i]]
			for q.len() > 0 && q.peek().due <= now && len(batch) < maxBatch {
				batch = append(batch, q.pop())
			}
			if q.len() == 0 {
				f.active[i] = f.active[len(f.active)-1]
				f.active = f.active[:len(f.active)-1]
				continue
			}
			next = min(next, q.peek().due)
			i++
		}
		f.queued -= len(batch)
		f.nextWake = next
		f.mu.Unlock()

		for i, p := range batch {
			f.write(p.buf, p.n)
			batch[i] = packet{}
		}
		full := len(batch) == maxBatch
		batch = batch[:0]
		if full {
			continue
		}
		if next != never {
			timer.Reset(next - f.now())
		}
		select {
		case <-f.done:
			f.drain()
			return
		case <-f.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// write writes one packet back to the device and frees its buffer.
func (f *forwarder) write(buf *[bufSize]byte, n int) {
	if _, err := f.dev.Write(buf[:n]); err != nil {
		f.writeErr.Add(1)
	}
	f.pool.Put(buf)
}

// drain drops every held packet.
func (f *forwarder) drain() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.queues {
		q := &f.queues[i]
		for q.len() > 0 {
			f.pool.Put(q.pop().buf)
		}
	}
	f.active, f.queued = f.active[:0], 0
}
