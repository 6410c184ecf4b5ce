package oci

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// ErrInvalidArgument marks every error caused by the container, image or pod configuration rather than by
// the host; it is errdefs.ErrInvalidArgument, so callers and the gRPC edge see the class without
// re-wrapping. Check with errors.Is.
var ErrInvalidArgument = errdefs.ErrInvalidArgument

// invalidError carries a message naming the offending field; it matches ErrInvalidArgument and whatever
// cause its message wraps, without repeating "invalid argument" in the text.
type invalidError struct{ err error }

func (e *invalidError) Error() string   { return e.err.Error() }
func (e *invalidError) Unwrap() []error { return []error{ErrInvalidArgument, e.err} }

// invalidf builds an ErrInvalidArgument error; format may use %w for an underlying cause.
func invalidf(format string, args ...any) error {
	return &invalidError{err: fmt.Errorf(format, args...)}
}
