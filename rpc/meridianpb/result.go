package meridianpb

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Err is the error r stands for (nil when OK): a status error with the
// code, message and leader hint the unary call would have returned.
// (Hand-written; `make proto` leaves this file alone.)
func (r *BatchResult) Err() error {
	if r.GetCode() == int32(codes.OK) {
		return nil
	}
	st := status.New(codes.Code(r.Code), r.Message)
	if r.Hint != nil {
		if d, err := st.WithDetails(r.Hint); err == nil {
			st = d
		}
	}
	return st.Err()
}
