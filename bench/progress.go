package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress draws a one-line progress bar on a terminal: the planned time
// of the steps done, plus the running step's elapsed time (capped at its
// plan), over the total plan. Disabled, it only prints notes, one a line.
type Progress struct {
	w       io.Writer
	enabled bool
	total   time.Duration

	mu        sync.Mutex // guards the fields below
	done      time.Duration
	step      string
	stepPlan  time.Duration
	stepStart time.Time
	started   time.Time
	lastLen   int

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewProgress starts a progress display for a plan of total. enabled
// should be true only when w is a terminal.
func NewProgress(w io.Writer, enabled bool, total time.Duration) *Progress {
	p := &Progress{w: w, enabled: enabled, total: max(total, time.Second), started: time.Now(), stop: make(chan struct{})}
	if enabled {
		p.wg.Go(func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		})
	}
	return p
}

// Step marks the start of a step planned to take plan; the returned func
// marks its end.
func (p *Progress) Step(label string, plan time.Duration) func() {
	p.mu.Lock()
	p.step, p.stepPlan, p.stepStart = label, plan, time.Now()
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.done += p.stepPlan
		p.stepPlan = 0
		p.mu.Unlock()
	}
}

// Note prints a line (above the bar when it is drawn).
func (p *Progress) Note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.enabled {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.lastLen))
	}
	fmt.Fprintf(p.w, format+"\n", args...)
	if p.enabled {
		p.draw()
	}
}

// Close removes the bar.
func (p *Progress) Close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	p.wg.Wait()
	if p.enabled {
		p.mu.Lock()
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.lastLen))
		p.mu.Unlock()
	}
}

// draw renders the bar; caller holds p.mu.
func (p *Progress) draw() {
	cur := p.done + min(time.Since(p.stepStart), p.stepPlan)
	frac := min(float64(cur)/float64(p.total), 1)
	const width = 30
	n := int(frac * width)
	elapsed := time.Since(p.started).Round(time.Second)
	eta := ""
	if frac > 0.02 {
		left := time.Duration(float64(elapsed)/frac) - elapsed
		eta = " eta " + left.Round(time.Second).String()
	}
	line := fmt.Sprintf("[%s%s] %3.0f%% %s  %s%s", strings.Repeat("#", n), strings.Repeat(".", width-n),
		100*frac, elapsed, p.step, eta)
	if len(line) > 110 {
		line = line[:110]
	}
	pad := max(p.lastLen-len(line), 0)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.lastLen = len(line)
}
