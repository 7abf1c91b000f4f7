// Package lab builds a network laboratory on one Linux machine: each host of
// each "region" is its own network namespace, joined by a veth link to a
// router namespace that delays every packet by the one-way delay configured
// for its (source region, destination region) pair. Tests and people use it
// to watch placement work: a client in "eu" sees a relay in "us" 40 ms away
// and one in "eu" next door.
//
// # Topology
//
//	stapes-<id>-eu-0 (10.77.1.10) ─veth─┐
//	stapes-<id>-us-0 (10.77.2.10) ─veth─┤ stapes-<id>-router ── delay
//	stapes-<id>-ap-0 (10.77.3.10) ─veth─┘
//
// Region i (from 0) has the subnet 10.77.<i+1>.0/24 and its host j the
// address 10.77.<i+1>.<j+10>; every host's default route points at the
// router (10.77.0.1). With Spec.IPv6, hosts get fd77:0:0:<i+1>::<j+10> (in hex)
// too (Host.Addr6). Traffic between any two hosts, in the same region
// or not, crosses the router once and is delayed once.
//
// # Delays
//
// When the kernel has sch_netem, each router-side link gets an htb qdisc
// with one netem class per source region (u32 filters on the source
// subnet). Without netem (common on minimal VM kernels), the router sends
// every forwarded packet, by policy routing, into a TUN device read by this
// process: a forwarder keeps one FIFO per region pair and writes each packet
// back after its delay (plus jitter and loss when asked). A FIFO per pair
// keeps packets in order even when the delay changes or jitters. Delays
// change at run time with SetDelay and SetLink in both modes.
//
// # Running code inside a host
//
// Command and Run start child processes with `ip netns exec`. Do runs a
// function on an OS thread that has joined a host's namespace, so a test
// can open sockets there without a child process: a socket belongs to the
// namespace it was created in for its whole life, and may be used from any
// goroutine once Do returns.
//
// # Cleanup
//
// New records its owner (pid and process start time) in
// /run/stapes-lab/<id> before creating anything, and Close removes the
// namespaces (which takes their links along), kills by pid any process left
// inside them, and removes the record last. CleanupStale removes every lab
// whose owner is gone, so a crashed test leaves nothing behind for long.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), the ip
// binary of iproute2 and /dev/net/tun; Available says whether this machine
// has them, so tests can skip with a clear message.
package lab
