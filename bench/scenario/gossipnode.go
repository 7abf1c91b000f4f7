package scenario

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/gossip"
)

// The hogged node of the gossip scenario runs as its own process
// (`stapes bench _gossip-node`), so a CPU hog starves that node and not
// the 99 others in the harness. It is driven over a loopback TCP control
// connection, one line per command:
//
//	harness → node: join SEED,SEED… | hog N | unhog | meta LOAD | traffic | quit
//	node → harness: addr HOST:PORT (first) | ev TYPE ID UNIXNANO | traffic UDPS UDPR TCPS TCPR | err TEXT
//
// It prints "listening CTRLADDR" when the control listener is up.

// hogMax bounds a CPU hog, whatever the harness says.
const hogMax = 3 * time.Minute

// GossipNode describes the hogged node's process (`stapes bench
// _gossip-node`).
type GossipNode struct {
	Profile string // "ours" or "bare"
	ID      string // node id
	Procs   int    // GOMAXPROCS of the process (the scenario uses 1)
	KeyHex  string // gossip key, 32 bytes in hex
}

// args are the arguments that start n's process.
func (n GossipNode) args() []string {
	return []string{"bench", "_gossip-node", "--profile", n.Profile, "--id", n.ID, "--procs", strconv.Itoa(n.Procs), "--key", n.KeyHex}
}

// ServeGossipNode runs one gossip node in this process, driven over a
// control connection (see above), until ctx ends, the harness says quit
// or closes the connection.
func ServeGossipNode(ctx context.Context, spec GossipNode, stdout io.Writer) error {
	prof, ok := gossipProfileByID(spec.Profile)
	if !ok || spec.ID == "" {
		return fmt.Errorf("gossip node: bad profile %q or empty id", spec.Profile)
	}
	k, err := hex.DecodeString(spec.KeyHex)
	if err != nil || len(k) != 32 {
		return fmt.Errorf("gossip node: the key must be 32 bytes in hex")
	}
	if spec.Procs > 0 {
		runtime.GOMAXPROCS(spec.Procs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
		if conn == nil {
			return errors.New("gossip node: accept failed")
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("gossip node: no control connection")
	}
	defer conn.Close()
	n := &remoteNode{conn: conn}
	return n.serve(ctx, prof, spec.ID, k)
}

// remoteNode is the node side of the control connection.
type remoteNode struct {
	conn net.Conn
	mu   sync.Mutex // guards writes to conn
}

func (n *remoteNode) send(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(n.conn, format+"\n", args...)
}

func (n *remoteNode) serve(ctx context.Context, prof gossipProfile, id string, key []byte) error {
	cfg := prof.config(id, key)
	cfg.OnEvent = func(ev gossip.Event) {
		n.send("ev %d %s %d", ev.Type, ev.Member.Meta.ID, ev.At.UnixNano())
	}
	c, err := gossip.New(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	n.send("addr %s", c.Addr())

	ctx, cancel := context.WithCancel(ctx)
	var hogs hogger
	var work sync.WaitGroup
	defer func() {
		cancel()
		hogs.stop()
		work.Wait()
	}()

	go func() { // the control connection ends the node when it closes
		<-ctx.Done()
		_ = n.conn.SetReadDeadline(time.Now())
	}()
	sc := bufio.NewScanner(n.conn)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "join":
			work.Go(func() {
				jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if _, err := c.Join(jctx, strings.Split(arg, ",")); err != nil {
					n.send("err join: %v", err)
				}
			})
		case "hog":
			k, _ := strconv.Atoi(arg)
			hogs.start(ctx, max(k, 1))
		case "unhog":
			hogs.stop()
		case "meta":
			load, _ := strconv.Atoi(arg)
			work.Go(func() {
				mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				m := cfg.Meta
				m.Load = uint32(load)
				_ = c.UpdateMeta(mctx, m)
			})
		case "traffic":
			t := c.Traffic()
			n.send("traffic %d %d %d %d", t.UDPSent, t.UDPReceived, t.TCPSent, t.TCPReceived)
		case "quit":
			return nil
		}
	}
	return nil
}

// hogger runs CPU hogs. Used by one goroutine.
type hogger struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// start replaces the hogs with k new ones, each stopping after hogMax.
func (h *hogger) start(ctx context.Context, k int) {
	h.stop()
	ctx, h.cancel = context.WithTimeout(ctx, hogMax)
	for range k {
		h.wg.Go(func() { hog(ctx) })
	}
}

// stop ends the hogs and waits for them.
func (h *hogger) stop() {
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
	}
	h.wg.Wait()
}

// hog burns a CPU on its own OS thread until ctx ends.
func hog(ctx context.Context) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	x := uint64(1)
	for ctx.Err() == nil {
		for range 1 << 16 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	_ = x
}

// hogClient is the harness side of a hogged node's process.
type hogClient struct {
	mu   sync.Mutex // guards writes to conn
	id   string
	p    *bench.Process
	conn net.Conn
	addr string // gossip address
	log  *gossipLog

	traffic chan gossip.Traffic
	done    chan struct{} // closed when the reader ends
}

// startHogNode starts the node's process and connects to it.
func startHogNode(ctx context.Context, e *Env, prof gossipProfile, id string, key []byte, log *gossipLog) (*hogClient, error) {
	out, err := e.logFile("gossip-node-" + prof.id)
	if err != nil {
		return nil, err
	}
	p, err := bench.StartProcess(ctx, bench.Command{
		Name: "hogged", Path: e.Self, Log: out,
		Args: GossipNode{Profile: prof.id, ID: id, Procs: 1, KeyHex: hex.EncodeToString(key)}.args(),
		Ready: func(line string) (string, bool) {
			addr, ok := strings.CutPrefix(line, "listening ")
			return strings.TrimSpace(addr), ok
		},
	})
	if err != nil {
		out.Close()
		return nil, err
	}
	stop := func() {
		p.Stop()
		out.Close()
	}
	e.track(stop)
	conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		stop()
		return nil, err
	}
	h := &hogClient{id: id, p: p, conn: conn, log: log, traffic: make(chan gossip.Traffic, 1), done: make(chan struct{})}
	addr := make(chan string, 1)
	go h.read(addr)
	select {
	case h.addr = <-addr:
	case <-time.After(10 * time.Second):
		h.Close()
		return nil, errors.New("gossip node: no address")
	}
	return h, nil
}

// read turns the node's lines into events, its address and traffic.
func (h *hogClient) read(addr chan<- string) {
	defer close(h.done)
	sc := bufio.NewScanner(h.conn)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "addr":
			addr <- f[1]
		case len(f) == 4 && f[0] == "ev":
			t, err1 := strconv.Atoi(f[1])
			ns, err2 := strconv.ParseInt(f[3], 10, 64)
			if err1 == nil && err2 == nil {
				h.log.record(h.id, gossip.EventType(t), f[2], time.Unix(0, ns))
			}
		case len(f) == 5 && f[0] == "traffic":
			var v [4]uint64
			for i := range v {
				v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
			}
			select {
			case h.traffic <- gossip.Traffic{UDPSent: v[0], UDPReceived: v[1], TCPSent: v[2], TCPReceived: v[3]}:
			default:
			}
		}
	}
}

func (h *hogClient) cmd(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = h.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(h.conn, format+"\n", args...)
}

// Traffic asks the node for its traffic counters.
func (h *hogClient) Traffic() (gossip.Traffic, bool) {
	h.cmd("traffic")
	select {
	case t := <-h.traffic:
		return t, true
	case <-time.After(5 * time.Second):
		return gossip.Traffic{}, false
	}
}

// Close ends the node and its process.
func (h *hogClient) Close() {
	h.cmd("quit")
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
	}
	h.conn.Close()
	h.p.Stop()
}
