package wire

import (
	"errors"
	"fmt"
)

// Decoding errors. Every decode failure wraps one of these.
var (
	ErrTruncated   = errors.New("wire: truncated frame")
	ErrTooLarge    = errors.New("wire: frame too large")
	ErrMalformed   = errors.New("wire: malformed frame")
	ErrUnknownType = errors.New("wire: unknown frame type")
	ErrEmpty       = errors.New("wire: empty frame")
)

// FieldError names the field that failed to decode. It never carries values,
// which may be patient data.
type FieldError struct {
	Type Type
	Tag  Tag
	Err  error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: field %d: %v", e.Type, e.Tag, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }
