package rpc

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// HTTP/2 flow-control windows of every connection a node serves or dials.
// Setting them turns off gRPC's dynamic window, whose bandwidth-delay
// pings cost a write and a read on each side per burst of data. On a
// loopback cluster at 64 clients that is ~6% more writes and ~3% more
// strong reads per CPU second. The windows are credit, not buffers: they
// only bound what a sender may have unread at the receiver.
const (
	StreamWindow = 4 << 20
	ConnWindow   = 16 << 20
)

// ServerOptions are the gRPC server options a node runs with: message
// size limits and the flow-control windows.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize),
		grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(ConnWindow)}
}

// DialOptions are the options a node dials its peers with.
func DialOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	return []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(StreamWindow), grpc.WithInitialConnWindowSize(ConnWindow),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize))}
}
