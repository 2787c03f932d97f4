package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/kv"
	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/txn"
)

func TestStatusError(t *testing.T) {
	if statusError(nil, &meridianpb.LeaderHint{Group: 1, Node: 2}) != nil {
		t.Fatal("nil error mapped to a status")
	}
	cases := []struct {
		err  error
		want codes.Code
	}{
		{txn.ErrNotLeader, codes.Unavailable},
		{node.ErrStopped, codes.Unavailable},
		{txn.ErrAborted, codes.Aborted},
		{&txn.AbortError{Reason: "wounded"}, codes.Aborted},
		{txn.ErrBusy, codes.ResourceExhausted},
		{node.ErrBusy, codes.ResourceExhausted},
		{txn.ErrTimeout, codes.DeadlineExceeded},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{txn.ErrInvalid, codes.InvalidArgument},
		{kv.ErrKeyTooLarge, codes.InvalidArgument},
		{kv.ErrValueTooLarge, codes.InvalidArgument},
		{kv.ErrEmptyKey, codes.InvalidArgument},
		{kv.ErrInvalidTimestamp, codes.InvalidArgument},
		{kv.ErrBelowGCHorizon, codes.FailedPrecondition},
		{txn.ErrUnknownTxn, codes.NotFound},
		{kv.ErrCorrupt, codes.Internal},
		{errors.New("something else"), codes.Internal},
	}
	hint := &meridianpb.LeaderHint{Group: 3, Node: 12, Addr: "127.0.0.1:9"}
	for _, tc := range cases {
		for _, err := range []error{tc.err, fmt.Errorf("group 3: %w", tc.err)} {
			for _, h := range []*meridianpb.LeaderHint{nil, hint} {
				got := statusError(err, h)
				st, ok := status.FromError(got)
				if !ok || st.Code() != tc.want {
					t.Errorf("%v (hint %v): %v, want %v", err, h, got, tc.want)
					continue
				}
				if st.Message() != err.Error() {
					t.Errorf("%v: message %q", err, st.Message())
				}
				gotHint, ok := LeaderHintOf(got)
				switch {
				case h != nil && tc.want == codes.Unavailable:
					if !ok || gotHint.Group != 3 || gotHint.Node != 12 || gotHint.Addr != "127.0.0.1:9" {
						t.Errorf("%v: hint %v %v, want %v", err, gotHint, ok, hint)
					}
				case ok:
					t.Errorf("%v (%v): carries hint %v", err, tc.want, gotHint)
				}
			}
		}
	}
	for _, err := range []error{nil, errors.New("plain"), status.Error(codes.Unavailable, "no details"), invalid("bad %d", 1)} {
		if h, ok := LeaderHintOf(err); ok {
			t.Errorf("LeaderHintOf(%v) = %v", err, h)
		}
	}
	if err := invalid("key %q", "k"); status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != `key "k"` {
		t.Errorf("invalid: %v", err)
	}
}
