package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorsFromStatus(t *testing.T) {
	sentinels := []error{ErrNotFound, ErrAborted, ErrUnavailable, ErrInvalidArgument, ErrDeadlineExceeded,
		ErrResourceExhausted, ErrFailedPrecondition, ErrCommitUnknown}
	cases := []struct {
		code codes.Code
		want error // nil: no sentinel
	}{
		{codes.NotFound, ErrNotFound},
		{codes.Aborted, ErrAborted},
		{codes.Unavailable, ErrUnavailable},
		{codes.InvalidArgument, ErrInvalidArgument},
		{codes.DeadlineExceeded, ErrDeadlineExceeded},
		{codes.ResourceExhausted, ErrResourceExhausted},
		{codes.FailedPrecondition, ErrFailedPrecondition},
		{codes.Internal, nil},
		{codes.Unknown, nil},
		{codes.PermissionDenied, nil},
	}
	for _, tc := range cases {
		err := wrap(status.Error(tc.code, "the server said so"))
		for _, e := range []error{err, fmt.Errorf("while reading: %w", err)} {
			for _, s := range sentinels {
				if got := errors.Is(e, s); got != (s == tc.want) {
					t.Errorf("%v: errors.Is(%v) = %v", e, s, got)
				}
			}
			if got := status.Code(e); got != tc.code {
				t.Errorf("status.Code(%v) = %v, want %v", e, got, tc.code)
			}
			// (Wrapped, gRPC reports the whole message.)
			if st, ok := status.FromError(e); !ok || !strings.HasSuffix(st.Message(), "the server said so") {
				t.Errorf("status.FromError(%v) = %v, %v", e, st, ok)
			}
			if !strings.Contains(e.Error(), "the server said so") {
				t.Errorf("message lost: %v", e)
			}
		}
		var me *Error
		if !errors.As(err, &me) || me.Code != tc.code {
			t.Errorf("errors.As(%v, *Error) = %v", err, me)
		}
	}
	// Cancellation, success and non-status errors pass through.
	if wrap(nil) != nil {
		t.Error("wrap(nil) != nil")
	}
	canceled := status.Error(codes.Canceled, "gone")
	if got := wrap(canceled); got != canceled {
		t.Errorf("wrap(canceled) = %v", got)
	}
	for _, e := range []error{context.Canceled, context.DeadlineExceeded, errors.New("plain")} {
		if got := wrap(e); got != e {
			t.Errorf("wrap(%v) = %v", e, got)
		}
	}
}
