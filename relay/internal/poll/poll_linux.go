//go:build linux

package poll

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Poller waits for readability of registered file descriptors with one
// goroutine (Run) and dispatches each event to its callback in a new
// goroutine started by the spawn function given to New.
type Poller struct {
	epfd  int
	evfd  int // eventfd that wakes Run for Close
	spawn func(func()) bool

	mu     sync.Mutex // guards the fields below
	cbs    map[int32]func()
	closed bool
	done   chan struct{}
}

// New creates a poller. spawn starts a goroutine its owner waits for; it
// returns false when the owner is shutting down (the event is dropped).
func New(spawn func(func()) bool) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("poll: epoll_create: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("poll: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("poll: epoll_ctl eventfd: %w", err)
	}
	return &Poller{epfd: epfd, evfd: evfd, spawn: spawn, cbs: map[int32]func(){}, done: make(chan struct{})}, nil
}

const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// Add registers fd, armed: cb runs once when fd is readable (or hung up).
func (p *Poller) Add(fd int, cb func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.cbs[int32(fd)] = cb
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		delete(p.cbs, int32(fd))
		return fmt.Errorf("poll: add: %w", err)
	}
	return nil
}

// Rearm arms fd again after its callback ran. Readiness is re-evaluated,
// so data that arrived meanwhile fires at once. The caller must not call
// Rearm for an fd it has removed.
func (p *Poller) Rearm(fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("poll: rearm: %w", err)
	}
	return nil
}

// Remove unregisters fd. Call it before closing fd.
func (p *Poller) Remove(fd int) error {
	p.mu.Lock()
	delete(p.cbs, int32(fd))
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("poll: remove: %w", err)
	}
	return nil
}

// Run dispatches events until Close. Call it once, from a goroutine.
func (p *Poller) Run() {
	defer close(p.done)
	evs := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, evs, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		for _, ev := range evs[:n] {
			if ev.Fd == int32(p.evfd) {
				return // Close
			}
			p.mu.Lock()
			cb := p.cbs[ev.Fd]
			p.mu.Unlock()
			if cb != nil {
				p.spawn(cb)
			}
		}
	}
}

// Close stops Run, waits for it, and releases the poller. Callbacks
// already started are not waited for (their spawner owns them).
func (p *Poller) Close(started bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(p.evfd, one[:])
	if started {
		<-p.done
	}
	unix.Close(p.evfd)
	return unix.Close(p.epfd)
}
