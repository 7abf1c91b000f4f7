package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/client/call"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/turn"
)

// callFlags are the sim's WebRTC call flags (issue 7): the clinician
// places a call, the patient answers; signalling over the session,
// media relay-only through TURN.
type callFlags struct {
	on         bool
	length     time.Duration
	turnURLs   string
	secretFile string
	username   string
	credFile   string
	loopback   bool
}

func (f *callFlags) define(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "call", false, "clinician: place a WebRTC call to the patient; patient: answer calls (needs --turn)")
	fs.DurationVar(&f.length, "call-time", 10*time.Second, "clinician: how long the call sends media")
	fs.StringVar(&f.turnURLs, "turn", "", "TURN `URLs`, comma-separated, e.g. turn:host:3478?transport=udp,turns:host:5349?transport=tcp")
	fs.StringVar(&f.secretFile, "turn-secret-file", "", "dev only: TURN shared-secret `FILE` (relayd's) to mint a credential for the session")
	fs.StringVar(&f.username, "turn-username", "", "TURN username (from the control plane's session answer)")
	fs.StringVar(&f.credFile, "turn-credential-file", "", "`FILE` holding the TURN credential for --turn-username")
	fs.BoolVar(&f.loopback, "call-loopback", false, "gather loopback candidates too (TURN on 127.0.0.1, labs)")
}

func (f *callFlags) check() error {
	if !f.on {
		return nil
	}
	if f.turnURLs == "" {
		return usagef("--call needs --turn (calls are relay-only)")
	}
	if (f.secretFile == "") == (f.username == "") {
		return usagef("--call needs --turn-secret-file or --turn-username with --turn-credential-file")
	}
	if (f.username == "") != (f.credFile == "") {
		return usagef("--turn-username and --turn-credential-file go together")
	}
	if f.length <= 0 {
		return usagef("--call-time must be positive")
	}
	return nil
}

// iceServers returns the TURN servers with a credential for session.
func (f *callFlags) iceServers(session string) ([]webrtc.ICEServer, error) {
	user, pass := f.username, ""
	if f.secretFile != "" {
		secrets, err := turn.LoadSecrets(f.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--turn-secret-file: %w", err)
		}
		if user, pass, _, err = (&turn.Credentials{Secrets: secrets}).Mint(session, time.Hour); err != nil {
			return nil, err
		}
	} else {
		b, err := os.ReadFile(f.credFile)
		if err != nil {
			return nil, fmt.Errorf("--turn-credential-file: %w", err)
		}
		pass = strings.TrimSpace(string(b))
	}
	return []webrtc.ICEServer{{URLs: strings.Split(f.turnURLs, ","), Username: user, Credential: pass}}, nil
}

// newCall returns a call of role on c's session.
func (f *callFlags) newCall(c *client.Client, session string, role call.Role) (*call.Call, error) {
	ice, err := f.iceServers(session)
	if err != nil {
		return nil, err
	}
	cfg := call.Config{Role: role, ICEServers: ice, Duration: f.length}
	if f.loopback {
		cfg.Settings = func(se *webrtc.SettingEngine) { se.SetIncludeLoopbackCandidate(true) }
	}
	return call.New(cfg, func(ctx context.Context, b []byte) error {
		_, err := c.Send(ctx, wire.KindSignal, b, false)
		return err
	})
}

// callRouter hands signalling deliveries to the current call.
type callRouter struct{ cur atomic.Pointer[call.Call] }

func (r *callRouter) handle(d client.Delivery) {
	if d.Kind != wire.KindSignal {
		return
	}
	if c := r.cur.Load(); c != nil {
		c.Handle(d.Payload)
	}
}

// printCall prints a call's outcome.
func printCall(out *lineWriter, who string, st call.Stats, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		out.printf("call %s failed: %v", who, err)
	}
	if st.ConnectTime == 0 {
		return
	}
	path := "direct"
	if st.Relayed {
		path = "relayed through TURN"
	}
	out.printf("call connected in %v, %s", st.ConnectTime.Round(time.Millisecond), path)
	for _, tr := range []struct {
		name string
		t    call.TrackStats
	}{{"audio", st.Audio}, {"video", st.Video}} {
		out.printf("call %s: sent %d, received %d of %d, lost %d", tr.name, tr.t.Sent, tr.t.Received, tr.t.PeerSent, tr.t.Lost)
	}
	out.printf("call data channel: %d/%d pings answered, RTT median %v, max %v", st.PingsBack, st.PingsSent,
		st.RTTMedian().Round(10*time.Microsecond), st.RTTMax().Round(10*time.Microsecond))
}

// placeCall is the clinician's side: read the session's signalling, call
// the patient, print the result.
func (f *callFlags) placeCall(ctx context.Context, c *client.Client, session string, out *lineWriter) error {
	cl, err := f.newCall(c, session, call.Caller)
	if err != nil {
		return err
	}
	var r callRouter
	r.cur.Store(cl)
	done := make(chan struct{})
	defer close(done)
	go func() { // ends with the client (Deliveries closes) or the call
		for {
			select {
			case d, ok := <-c.Deliveries():
				if !ok {
					return
				}
				r.handle(d)
			case <-done:
				return
			}
		}
	}()
	out.printf("calling the patient (relay-only through %s)", f.turnURLs)
	st, err := cl.Run(ctx)
	printCall(out, "to the patient", st, err)
	return err
}

// answerCalls is the patient's side: answer one call after another until
// ctx ends. The patient's delivery loop feeds r.
func (f *callFlags) answerCalls(ctx context.Context, c *client.Client, session string, r *callRouter, out *lineWriter) {
	for i := 0; ctx.Err() == nil; i++ {
		cl, err := f.newCall(c, session, call.Callee)
		if err != nil {
			out.printf("cannot answer calls: %v", err)
			return
		}
		r.cur.Store(cl)
		st, err := cl.Run(ctx)
		r.cur.Store(nil)
		if ctx.Err() != nil && st.ConnectTime == 0 {
			return
		}
		printCall(out, "from the clinician", st, err)
		if err != nil && i > 100 { // bounded: a broken setup does not spin forever
			return
		}
	}
}
