//go:build !linux

package poll

// Poller is not available off Linux; New returns ErrUnsupported and
// callers fall back to a goroutine per connection.
type Poller struct{}

func New(spawn func(func()) bool) (*Poller, error) { return nil, ErrUnsupported }
func (p *Poller) Add(fd int, cb func()) error      { return ErrUnsupported }
func (p *Poller) Rearm(fd int) error               { return ErrUnsupported }
func (p *Poller) Remove(fd int) error              { return ErrUnsupported }
func (p *Poller) Run()                             {}
func (p *Poller) Close(started bool) error         { return nil }
