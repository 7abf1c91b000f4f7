package scenario

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/bench"
	"github.com/stapes-relay/stapes/internal/freeport"
	"github.com/stapes-relay/stapes/relay"
)

// clusterRegion is the one region of the harness's relay clusters.
const clusterRegion = "bench"

// cluster is a static relayd cluster on loopback (--peers): every relay
// of one region, each session replicated to another relay before
// PERSISTED and refused rather than acknowledged alone
// (--require-replica). Nodes keep their ports and data directories, so a
// killed node restarts as the same relay.
type cluster struct {
	nodes []*clusterNode
}

// clusterNode is one relayd of a cluster.
type clusterNode struct {
	e        *Env
	id       string
	addr     string // client host:port: TCP for WebSocket, UDP for QUIC
	peerAddr string // UDP host:port of the relay-to-relay links
	args     []string

	mu  sync.Mutex // guards the fields below
	p   *bench.Process
	ops string // ops host:port of the running process
}

// startCluster starts n relays named name-a, name-b, ... sharing a peer
// secret, with extra relayd flags, and returns once every one is ready.
func startCluster(ctx context.Context, e *Env, name string, n int, extra ...string) (*cluster, error) {
	clients, peers, err := reservePorts(n)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	secretFile := filepath.Join(e.Dir, e.Session(name+"-peer-secret"))
	if err := os.WriteFile(secretFile, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, err
	}
	c := &cluster{}
	var list []string
	for i := range n {
		nd := &clusterNode{e: e, id: fmt.Sprintf("%s-%c", name, 'a'+i), addr: clients[i], peerAddr: peers[i]}
		c.nodes = append(c.nodes, nd)
		list = append(list, strings.Join([]string{nd.id, clusterRegion, nd.peerAddr, nd.url()}, "@"))
	}
	for _, nd := range c.nodes {
		nd.args = append(e.relaydArgs(nd.addr, filepath.Join(e.Dir, e.Session("data-"+nd.id)), nd.id),
			"--tls-cert", e.CertFile, "--tls-key", e.KeyFile,
			"--region", clusterRegion, "--peer-listen", nd.peerAddr, "--peer-secret-file", secretFile,
			"--peers", strings.Join(list, ","), "--require-replica", "--self-url", nd.url())
		nd.args = append(nd.args, extra...)
	}
	for _, nd := range c.nodes {
		if err := nd.start(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// reservePorts finds n client addresses (a TCP and a UDP port of the same
// number, as relayd listens) and n peer addresses (UDP) on 127.0.0.1, all
// free when it returns, below the kernel's ephemeral range (a relay killed
// and restarted gets its ports back). The relays bind them right after; a
// port taken in between fails a start, it cannot skew a figure.
func reservePorts(n int) (clients, peers []string, err error) {
	var open []io.Closer
	defer func() {
		for _, l := range open {
			l.Close()
		}
	}()
	for range n {
		tl, ul, err := freeport.Pair("127.0.0.1")
		if err != nil {
			return nil, nil, err
		}
		open = append(open, tl, ul)
		pl, err := freeport.UDP("127.0.0.1")
		if err != nil {
			return nil, nil, err
		}
		open = append(open, pl)
		clients = append(clients, tl.Addr().String())
		peers = append(peers, pl.LocalAddr().String())
	}
	return clients, peers, nil
}

// URLs are the nodes' client URLs, in node order.
func (c *cluster) URLs() []string {
	out := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		out[i] = nd.url()
	}
	return out
}

// byURL returns the node serving url.
func (c *cluster) byURL(url string) (*clusterNode, bool) {
	for _, nd := range c.nodes {
		if nd.url() == url {
			return nd, true
		}
	}
	return nil, false
}

// ready reports whether every node runs and answers /readyz.
func (c *cluster) ready(ctx context.Context) bool {
	for _, nd := range c.nodes {
		if !nd.ready(ctx) {
			return false
		}
	}
	return true
}

// Close kills every node.
func (c *cluster) Close() {
	for _, nd := range c.nodes {
		nd.kill()
	}
}

func (n *clusterNode) url() string { return "wss://" + n.addr + relay.WSPath }

// start runs the node and waits for its "relayd ready" line. The process
// is killed by pid by kill, by the environment's Close, or when ctx ends.
func (n *clusterNode) start(ctx context.Context) error {
	log, err := n.e.logFile("relayd-" + n.id)
	if err != nil {
		return err
	}
	var ops string
	p, err := bench.StartProcess(ctx, bench.Command{Name: n.id, Path: n.e.Relayd, Args: n.args, Log: log,
		Ready: func(line string) (string, bool) {
			ws, o, ok := readyAddrs(line)
			ops = o
			return ws, ok
		}})
	if err != nil {
		log.Close()
		return fmt.Errorf("relay %s: %w", n.id, err)
	}
	n.e.track(func() {
		p.Stop()
		log.Close()
	})
	n.mu.Lock()
	n.p, n.ops = p, ops
	n.mu.Unlock()
	return nil
}

// kill SIGKILLs the node by pid and waits until it is gone. Idempotent.
func (n *clusterNode) kill() {
	n.mu.Lock()
	p := n.p
	n.mu.Unlock()
	if p != nil {
		p.Stop()
	}
}

// proc is the running process, for CPU sampling, named name.
func (n *clusterNode) proc(name string) bench.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil {
		return bench.Proc{Name: name}
	}
	return bench.Proc{Name: name, Pid: n.p.Pid}
}

// opsClient reads relays' ops endpoints (loopback, answered at once).
var opsClient = &http.Client{Timeout: 2 * time.Second}

// opsGet fetches path from the node's ops listener.
func (n *clusterNode) opsGet(ctx context.Context, path string) (*http.Response, error) {
	n.mu.Lock()
	p, ops := n.p, n.ops
	n.mu.Unlock()
	if p == nil || p.Exited() || ops == "" {
		return nil, fmt.Errorf("relay %s is not running", n.id)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := opsClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("relay %s: GET %s: %s", n.id, path, resp.Status)
	}
	return resp, nil
}

// ready reports whether the node runs and answers /readyz.
func (n *clusterNode) ready(ctx context.Context) bool {
	resp, err := n.opsGet(ctx, "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// metric reads a counter or gauge from the node's /metrics, summed over
// its label sets; 0 when it has no series yet.
func (n *clusterNode) metric(ctx context.Context, name string) (float64, error) {
	resp, err := n.opsGet(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return sumMetric(bufio.NewScanner(resp.Body), name)
}

// sumMetric sums the samples of metric name in Prometheus text format.
func sumMetric(sc *bufio.Scanner, name string) (float64, error) {
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("scenario: metric %s: %w", name, err)
		}
		sum += v
	}
	return sum, sc.Err()
}
