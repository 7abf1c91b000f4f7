package lab

import "errors"

var (
	// ErrUnavailable: this machine cannot run a lab (not root, no ip
	// binary, no network namespaces or no TUN device). Available wraps it.
	ErrUnavailable = errors.New("lab: unavailable")
	// ErrSpec: the Spec is invalid (unknown region, bad name, too many
	// hosts, a delay out of range).
	ErrSpec = errors.New("lab: invalid spec")
	// ErrUnknownHost: no host or region of that name in this lab.
	ErrUnknownHost = errors.New("lab: unknown host")
	// ErrExists: a lab with the requested name already exists.
	ErrExists = errors.New("lab: already exists")
	// ErrClosed: the lab has been closed.
	ErrClosed = errors.New("lab: closed")
)
