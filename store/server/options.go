package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// MaxCallsPerConn is how many calls one client connection may have open at
// once; more wait until one ends.
const MaxCallsPerConn = 128

// GRPCOptions returns the options of the gRPC server of `bes serve`, for
// events of up to maxEventSize bytes.
//
// They bound what clients that misbehave or vanish can hold: a connection
// has at most MaxCallsPerConn calls at once (Bazel opens one or two); one
// idle for half an hour is closed (a client reconnects); one silent for two
// minutes is pinged, and closed if it does not answer, which ends its
// calls; and a client may not ping more often than every ten seconds. A
// large event is decoded without a copy of its bytes (recvCodec).
func GRPCOptions(maxEventSize int) []grpc.ServerOption {
	return []grpc.ServerOption{
		// Room for the request around the largest event; the service
		// refuses a larger event itself, naming it.
		grpc.MaxRecvMsgSize(maxEventSize + 64<<10),
		grpc.ForceServerCodecV2(newRecvCodec()),
		// A stopping server waits for the calls' handlers (and their last
		// writes) to return.
		grpc.WaitForHandlers(true),
		grpc.MaxConcurrentStreams(MaxCallsPerConn),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 30 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}
