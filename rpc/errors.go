package rpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/txn"
)

// statusError maps an error from the runtime to a gRPC status. hint, when
// set, rides along as a LeaderHint detail.
func statusError(err error, hint *meridianpb.LeaderHint) error {
	if err == nil {
		return nil
	}
	var code codes.Code
	switch {
	case errors.Is(err, txn.ErrNotLeader), errors.Is(err, node.ErrStopped), errors.Is(err, txn.ErrClock):
		code = codes.Unavailable
	case errors.Is(err, txn.ErrAborted):
		code = codes.Aborted
	case errors.Is(err, txn.ErrBusy), errors.Is(err, node.ErrBusy):
		code = codes.ResourceExhausted
	case errors.Is(err, txn.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, txn.ErrInvalid), errors.Is(err, kv.ErrKeyTooLarge), errors.Is(err, kv.ErrValueTooLarge),
		errors.Is(err, kv.ErrEmptyKey), errors.Is(err, kv.ErrInvalidTimestamp):
		code = codes.InvalidArgument
	case errors.Is(err, kv.ErrBelowGCHorizon), errors.Is(err, txn.ErrTooOld):
		code = codes.FailedPrecondition
	case errors.Is(err, txn.ErrUnknownTxn):
		code = codes.NotFound
	default:
		code = codes.Internal
	}
	st := status.New(code, err.Error())
	if hint != nil && code == codes.Unavailable {
		if d, derr := st.WithDetails(hint); derr == nil {
			st = d
		}
	}
	return st.Err()
}

func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// LeaderHintOf extracts the LeaderHint detail of an UNAVAILABLE error.
func LeaderHintOf(err error) (*meridianpb.LeaderHint, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	for _, d := range st.Details() {
		if h, ok := d.(*meridianpb.LeaderHint); ok {
			return h, true
		}
	}
	return nil, false
}
