package client

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
)

// errStream is a ClientStream whose every message fails with err.
type errStream struct {
	grpc.ClientStream
	err error
}

func (s errStream) SendMsg(any) error { return s.err }
func (s errStream) RecvMsg(any) error { return s.err }

func TestNativeStream(t *testing.T) {
	wrapped := fmt.Errorf("read: %w", io.EOF)
	tests := []struct {
		name  string
		err   error
		same  bool  // the error comes back as it is
		class error // else the errdefs class it carries
	}{
		{"no error", nil, true, nil},
		{"end of stream", io.EOF, true, nil},
		{"wrapped end of stream", wrapped, true, nil},
		{"status", errgrpc.ToGRPC(fmt.Errorf("no such container: %w", errdefs.ErrNotFound)), false, errdefs.ErrNotFound},
		{"unavailable", errgrpc.ToGRPC(fmt.Errorf("shim gone: %w", errdefs.ErrUnavailable)), false, errdefs.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := nativeStream{errStream{err: tt.err}}
			for op, err := range map[string]error{"SendMsg": s.SendMsg(nil), "RecvMsg": s.RecvMsg(nil)} {
				if tt.same {
					if err != tt.err { //nolint:errorlint // the very error, not one wrapping it
						t.Errorf("%s = %v, want %v as it is", op, err, tt.err)
					}
					continue
				}
				if !errors.Is(err, tt.class) {
					t.Errorf("%s = %v, want an error of class %v", op, err, tt.class)
				}
				if want := native(tt.err); err.Error() != want.Error() {
					t.Errorf("%s = %q, want %q", op, err, want)
				}
			}
		})
	}
}

// An error the shim made from several causes arrives with its message once
// and its class.
func TestNativeJoined(t *testing.T) {
	shimErr := fmt.Errorf("parse spec of container %q: %w: %w", "main", errors.New("unexpected end of JSON input"), errdefs.ErrInvalidArgument)
	got := native(errgrpc.ToGRPC(shimErr))
	if !errdefs.IsInvalidArgument(got) || got.Error() != shimErr.Error() {
		t.Errorf("native = %q (%v), want %q of class InvalidArgument", got, errdefs.Resolve(got), shimErr)
	}
}
