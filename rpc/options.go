package rpc

import (
	"google.golang.org/grpc"

	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// ServerOptions are the gRPC server options a node runs with: the message
// size limits and the flow-control windows of meridianpb.DialOptions.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.InitialWindowSize(meridianpb.StreamWindow), grpc.InitialConnWindowSize(meridianpb.ConnWindow)}
}
