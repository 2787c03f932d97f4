package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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

// A commit whose outcome is unknown keeps the cause in its chain: callers
// tell a lost leader (Unavailable) from a deadline, and status.Code sees
// it.
func TestCommitUnknownKeepsItsCause(t *testing.T) {
	tc := newTestCluster(t, 3)
	c := newClient(t, tc.addrs())
	// Two of the three voters go away: no group can commit.
	for _, n := range tc.nodes[1:] {
		n.srv.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := c.ReadWriteTransaction(ctx, func(ctx context.Context, t *ReadWriteTransaction) error {
		return t.BufferWrite(Put([]byte("a/unknown"), []byte("1")), Put([]byte("z/unknown"), []byte("1")))
	})
	if !errors.Is(err, ErrCommitUnknown) {
		t.Fatalf("commit with no quorum: %v, want ErrCommitUnknown", err)
	}
	cause := errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
	if !cause {
		t.Fatalf("ErrCommitUnknown lost its cause: %v (want it to match ErrUnavailable or a deadline)", err)
	}
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("status.Code of %v = %s, want Unavailable or DeadlineExceeded", err, code)
	}
}
