package client

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// Batching: the client sends its calls to a node over one long-lived
// Batch stream per connection, many callers' calls to a message, instead of
// a unary call each (an HTTP/2 stream with headers and trailers). Results
// come back batched too and are matched by id.

const (
	maxBatchCalls = 4096     // the server's limit per BatchRequest
	maxBatchBytes = 16 << 20 // well below the 64 MiB message limit
	batchQueue    = 8192
)

// batcher multiplexes one connection's calls over a Batch stream, opened on
// first use and reopened after it breaks.
type batcher struct {
	api   meridianpb.MeridianClient
	queue chan *pendingCall
	done  chan struct{}
	once  sync.Once
}

type pendingCall struct {
	call *meridianpb.BatchCall
	res  chan batchOutcome // buffered: the receiver never blocks
}

type batchOutcome struct {
	r   *meridianpb.BatchResult
	err error
}

// batchStream is one open Batch stream and the calls waiting on it.
type batchStream struct {
	s       meridianpb.Meridian_BatchClient
	cancel  context.CancelFunc
	mu      sync.Mutex
	waiting map[uint64]*pendingCall
	err     error // set once broken
}

func newBatcher(conn *grpc.ClientConn) *batcher {
	b := &batcher{api: meridianpb.NewMeridianClient(conn), queue: make(chan *pendingCall, batchQueue), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *batcher) close() { b.once.Do(func() { close(b.done) }) }

// do sends one call and waits for its result.
func (b *batcher) do(ctx context.Context, call *meridianpb.BatchCall) (*meridianpb.BatchResult, error) {
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, status.FromContextError(context.DeadlineExceeded).Err()
		}
		call.TimeoutNs = int64(left)
	}
	pc := &pendingCall{call: call, res: make(chan batchOutcome, 1)}
	select {
	case b.queue <- pc:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-b.done:
		return nil, status.Error(codes.Canceled, "client closed")
	}
	select {
	case o := <-pc.res:
		if o.err != nil {
			return nil, o.err
		}
		return o.r, o.r.Err()
	case <-ctx.Done():
		// The call may still run at the server, as a cancelled unary call
		// may; its result is dropped when it arrives.
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-b.done:
		return nil, status.Error(codes.Canceled, "client closed")
	}
}

// run sends queued calls in batches over the current stream.
func (b *batcher) run() {
	var cur *batchStream
	var next uint64
	defer func() {
		if cur != nil {
			cur.cancel()
		}
	}()
	for {
		var first *pendingCall
		select {
		case first = <-b.queue:
		case <-b.done:
			return
		}
		batch := []*pendingCall{first}
		if len(b.queue) == 0 {
			// Yield once so that callers about to queue join this batch
			// (see the same step in the server's sendResults).
			runtime.Gosched()
		}
		size := proto.Size(first.call)
	more:
		for len(batch) < maxBatchCalls && size < maxBatchBytes {
			select {
			case pc := <-b.queue:
				batch = append(batch, pc)
				size += proto.Size(pc.call)
			default:
				break more
			}
		}
		if cur == nil || cur.broken() {
			var err error
			if cur, err = b.open(); err != nil {
				cur = nil
				for _, pc := range batch {
					pc.res <- batchOutcome{err: status.Errorf(codes.Unavailable, "opening a batch stream: %v", err)}
				}
				continue
			}
		}
		req := &meridianpb.BatchRequest{Calls: make([]*meridianpb.BatchCall, len(batch))}
		cur.mu.Lock()
		for i, pc := range batch {
			next++
			pc.call.Id = next
			req.Calls[i] = pc.call
			if cur.err != nil {
				pc.res <- batchOutcome{err: cur.err}
				continue
			}
			cur.waiting[next] = pc
		}
		cur.mu.Unlock()
		if err := cur.s.Send(req); err != nil {
			cur.fail(err)
		}
	}
}

// open starts a stream and its receiver.
func (b *batcher) open() (*batchStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := b.api.Batch(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	bs := &batchStream{s: s, cancel: cancel, waiting: map[uint64]*pendingCall{}}
	go bs.receive()
	return bs, nil
}

func (bs *batchStream) receive() {
	for {
		resp, err := bs.s.Recv()
		if err != nil {
			bs.fail(err)
			return
		}
		bs.mu.Lock()
		for _, r := range resp.Results {
			if pc := bs.waiting[r.Id]; pc != nil {
				delete(bs.waiting, r.Id)
				pc.res <- batchOutcome{r: r}
			}
		}
		bs.mu.Unlock()
	}
}

func (bs *batchStream) broken() bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.err != nil
}

// fail ends the stream: every call waiting on it fails UNAVAILABLE (for a
// commit that is an outcome in doubt, which the commit path retries).
func (bs *batchStream) fail(err error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.err == nil {
		code := status.Code(err)
		if code != codes.Unavailable && code != codes.Canceled {
			code = codes.Unavailable
		}
		bs.err = status.Error(code, fmt.Sprintf("batch stream: %v", err))
		bs.cancel()
	}
	for id, pc := range bs.waiting {
		delete(bs.waiting, id)
		pc.res <- batchOutcome{err: bs.err}
	}
}

// batchAPI is a MeridianClient whose transactional calls go over a
// batcher (Locate and Batch itself stay unary/direct).
type batchAPI struct {
	meridianpb.MeridianClient
	b *batcher
}

func (a batchAPI) Read(ctx context.Context, in *meridianpb.ReadRequest, _ ...grpc.CallOption) (*meridianpb.ReadResponse, error) {
	r, err := a.b.do(ctx, &meridianpb.BatchCall{Call: &meridianpb.BatchCall_Read{Read: in}})
	if err != nil {
		return nil, err
	}
	return r.GetRead(), nil
}

func (a batchAPI) SnapshotRead(ctx context.Context, in *meridianpb.SnapshotReadRequest, _ ...grpc.CallOption) (*meridianpb.ReadResponse, error) {
	r, err := a.b.do(ctx, &meridianpb.BatchCall{Call: &meridianpb.BatchCall_SnapshotRead{SnapshotRead: in}})
	if err != nil {
		return nil, err
	}
	return r.GetRead(), nil
}

func (a batchAPI) Commit(ctx context.Context, in *meridianpb.CommitRequest, _ ...grpc.CallOption) (*meridianpb.CommitResponse, error) {
	r, err := a.b.do(ctx, &meridianpb.BatchCall{Call: &meridianpb.BatchCall_Commit{Commit: in}})
	if err != nil {
		return nil, err
	}
	return r.GetCommit(), nil
}

func (a batchAPI) Rollback(ctx context.Context, in *meridianpb.RollbackRequest, _ ...grpc.CallOption) (*meridianpb.RollbackResponse, error) {
	r, err := a.b.do(ctx, &meridianpb.BatchCall{Call: &meridianpb.BatchCall_Rollback{Rollback: in}})
	if err != nil {
		return nil, err
	}
	return r.GetRollback(), nil
}
