// Package bench is the measuring core of `stapes bench`: an HDR-style
// latency histogram, an open-loop load scheduler whose latencies are taken
// from the intended send time (so coordinated omission cannot hide a
// stall), a closed-loop max-throughput runner, per-process CPU and RSS
// sampling from /proc, repeat statistics, goal checks with met/not-met
// verdicts, and the report (JSON, Markdown, PNG plots) with a terminal
// progress bar.
//
// The scenarios themselves live in bench/scenario; the baselines they are
// compared with in bench/baseline; the frame-level relay client they drive
// in bench/relayconn; the plotting in bench/chart.
package bench
