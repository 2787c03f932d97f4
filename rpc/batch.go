package rpc

import (
	"context"
	"io"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/rpc/meridianpb"
)

// Limits of the Batch stream.
const (
	// MaxBatchCalls bounds the calls in one BatchRequest.
	MaxBatchCalls = 4096
	// MaxStreamCalls bounds the calls in flight on one Batch stream; beyond
	// it, calls are answered RESOURCE_EXHAUSTED at once.
	MaxStreamCalls = 16384
	// maxResults bounds the results sent in one BatchResponse.
	maxResults = 4096
)

// Batch serves a client's multiplexed stream: every call runs as its unary
// counterpart would, on its own goroutine (a commit waits for Paxos and
// commit wait; a read may wait for locks or safe time), and results go back
// batched, as they become ready.
func (s *Server) Batch(stream meridianpb.Meridian_BatchServer) error {
	ctx := stream.Context()
	results := make(chan *meridianpb.BatchResult, 1024)
	sent := make(chan error, 1)
	go func() { sent <- sendResults(stream, results) }()
	// Receive on a goroutine of its own, so that a stopping node can end
	// the stream (clients keep theirs open between calls).
	type recvd struct {
		b   *meridianpb.BatchRequest
		err error
	}
	in := make(chan recvd)
	go func() {
		for {
			b, err := stream.Recv()
			select {
			case in <- recvd{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var calls sync.WaitGroup
	sem := make(chan struct{}, MaxStreamCalls)
	finish := func(err error) error {
		calls.Wait()
		close(results)
		if serr := <-sent; err == nil {
			err = serr
		}
		return err
	}
	for {
		var r recvd
		select {
		case r = <-in:
		case <-s.stop:
			return finish(status.Error(codes.Unavailable, "node stopping"))
		}
		if r.err == io.EOF {
			return finish(nil)
		}
		if r.err != nil {
			return finish(r.err)
		}
		if len(r.b.Calls) > MaxBatchCalls {
			return finish(status.Errorf(codes.InvalidArgument, "a batch of %d calls (at most %d)", len(r.b.Calls), MaxBatchCalls))
		}
		for _, call := range r.b.Calls {
			select {
			case sem <- struct{}{}:
			default:
				deliver(ctx, results, &meridianpb.BatchResult{Id: call.Id, Code: int32(codes.ResourceExhausted),
					Message: "too many calls in flight on this stream"})
				continue
			}
			calls.Add(1)
			s.workers.run(func() {
				defer calls.Done()
				defer func() { <-sem }()
				deliver(ctx, results, s.serveCall(ctx, call))
			})
		}
	}
}

// workers runs batched calls on goroutines that outlive a call: a fresh
// goroutine per call would start with a small stack and grow it again
// for every read (Pebble's iterators run deep), which costs more than the
// read. A call goes to an idle worker when there is one, else to a new
// one; workers idle for a while exit.
type workers struct {
	tasks chan func()
}

const workerIdle = 10 * time.Second

func newWorkers() *workers { return &workers{tasks: make(chan func())} }

func (w *workers) run(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-w.tasks:
		case <-idle.C:
			return
		}
	}
}

// deliver queues a result unless the stream is gone.
func deliver(ctx context.Context, results chan<- *meridianpb.BatchResult, r *meridianpb.BatchResult) {
	select {
	case results <- r:
	case <-ctx.Done():
	}
}

// sendResults sends results in batches of whatever is ready until results
// closes.
func sendResults(stream meridianpb.Meridian_BatchServer, results <-chan *meridianpb.BatchResult) error {
	var failed error
	for r := range results {
		if failed != nil {
			continue // drain, so that no call blocks
		}
		batch := &meridianpb.BatchResponse{Results: []*meridianpb.BatchResult{r}}
		if len(results) == 0 {
			// Let the workers that are about to deliver run first. Without
			// this the loop wins every race, each result goes alone, and
			// the client answers every lone result with a lone call: at 64
			// clients, batches of ~1 call. With it, ~6 per message and
			// ~25% more strong reads per CPU second.
			runtime.Gosched()
		}
	more:
		for len(batch.Results) < maxResults {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				batch.Results = append(batch.Results, r)
			default:
				break more
			}
		}
		failed = stream.Send(batch)
	}
	return failed
}

// serveCall runs one call as its unary counterpart.
func (s *Server) serveCall(ctx context.Context, call *meridianpb.BatchCall) *meridianpb.BatchResult {
	if call.TimeoutNs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(call.TimeoutNs))
		defer cancel()
	}
	res := &meridianpb.BatchResult{Id: call.Id}
	var err error
	switch c := call.Call.(type) {
	case *meridianpb.BatchCall_Read:
		var r *meridianpb.ReadResponse
		if r, err = s.Read(ctx, c.Read); err == nil {
			res.Result = &meridianpb.BatchResult_Read{Read: r}
		}
	case *meridianpb.BatchCall_SnapshotRead:
		var r *meridianpb.ReadResponse
		if r, err = s.SnapshotRead(ctx, c.SnapshotRead); err == nil {
			res.Result = &meridianpb.BatchResult_Read{Read: r}
		}
	case *meridianpb.BatchCall_Commit:
		var r *meridianpb.CommitResponse
		if r, err = s.Commit(ctx, c.Commit); err == nil {
			res.Result = &meridianpb.BatchResult_Commit{Commit: r}
		}
	case *meridianpb.BatchCall_Rollback:
		var r *meridianpb.RollbackResponse
		if r, err = s.Rollback(ctx, c.Rollback); err == nil {
			res.Result = &meridianpb.BatchResult_Rollback{Rollback: r}
		}
	case *meridianpb.BatchCall_StrongTimestamp:
		var r *meridianpb.StrongTimestampResponse
		if r, err = s.StrongTimestamp(ctx, c.StrongTimestamp); err == nil {
			res.Result = &meridianpb.BatchResult_StrongTimestamp{StrongTimestamp: r}
		}
	default:
		err = invalid("a batch call with no request")
	}
	if err != nil {
		st := status.Convert(err)
		res.Code, res.Message = int32(st.Code()), st.Message()
		if h, ok := LeaderHintOf(err); ok {
			res.Hint = h
		}
		if st.Code() == codes.OK {
			res.Code = int32(codes.Unknown)
		}
	}
	return res
}
