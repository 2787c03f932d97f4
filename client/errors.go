package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors. Every error the client returns from a server carries
// its gRPC status code (status.Code(err) works) and matches the sentinel of
// that code with errors.Is.
var (
	// ErrNotFound: the key does not exist (reads), or no such group.
	ErrNotFound = errors.New("meridian: not found")
	// ErrAborted: the transaction was aborted (lock conflict with an older
	// transaction, lost locks, coordinator abort). ReadWriteTransaction
	// retries it by itself.
	ErrAborted = errors.New("meridian: transaction aborted")
	// ErrUnavailable: no leader could be reached in time.
	ErrUnavailable = errors.New("meridian: unavailable")
	// ErrInvalidArgument: the request broke a limit or was malformed.
	ErrInvalidArgument = errors.New("meridian: invalid argument")
	// ErrDeadlineExceeded: the server gave up waiting (locks, safe time).
	ErrDeadlineExceeded = errors.New("meridian: deadline exceeded")
	// ErrResourceExhausted: too many waiting requests; back off.
	ErrResourceExhausted = errors.New("meridian: resource exhausted")
	// ErrFailedPrecondition: e.g. a read below the GC horizon, or the
	// cluster is not initialized.
	ErrFailedPrecondition = errors.New("meridian: failed precondition")
	// ErrCommitUnknown: the commit was sent but its outcome could not be
	// learned before the context ended.
	ErrCommitUnknown = errors.New("meridian: commit outcome unknown")
)

var codeSentinel = map[codes.Code]error{
	codes.NotFound:           ErrNotFound,
	codes.Aborted:            ErrAborted,
	codes.Unavailable:        ErrUnavailable,
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.DeadlineExceeded:   ErrDeadlineExceeded,
	codes.ResourceExhausted:  ErrResourceExhausted,
	codes.FailedPrecondition: ErrFailedPrecondition,
}

// Error is a server error: its gRPC status and the matching sentinel.
type Error struct {
	Code    codes.Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("meridian: %s: %s", e.Code, e.Message) }

// Is makes errors.Is(err, ErrAborted) (and the other sentinels) work.
func (e *Error) Is(target error) bool { return codeSentinel[e.Code] == target }

// GRPCStatus lets status.Code and status.FromError see the code.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

func wrap(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.Canceled || st.Code() == codes.OK {
			return err
		}
		return &Error{Code: st.Code(), Message: st.Message()}
	}
	return err
}
