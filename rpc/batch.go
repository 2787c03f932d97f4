package rpc

import (
	"context"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meridiandb/meridian/node"
	"github.com/meridiandb/meridian/rpc/meridianpb"
	"github.com/meridiandb/meridian/txn"
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
// counterpart would and results go back batched, as they become ready.
// Locking reads, commits and rollbacks go to their group without a
// goroutine of their own (see serveAsync); the other calls run on reused
// worker goroutines (a snapshot read may wait for safe time). A call holds
// one of MaxStreamCalls slots until its result is sent.
func (s *Server) Batch(stream meridianpb.Meridian_BatchServer) error {
	ctx := stream.Context()
	sem := make(chan struct{}, MaxStreamCalls)
	results := newResultQueue()
	sent := make(chan error, 1)
	go func() { sent <- sendResults(stream, results, sem) }()
	// Receive on a goroutine of its own, so that a stopping node can end
	// the stream (clients keep theirs open between calls).
	type recvd struct {
		b   *meridianpb.BatchRequest
		at  time.Time // when it arrived: the calls' timeouts count from here
		err error
	}
	in := make(chan recvd)
	go func() {
		for {
			b, err := stream.Recv()
			select {
			case in <- recvd{b, time.Now(), err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var calls sync.WaitGroup
	finish := func(err error) error {
		if err == nil {
			// The client closed its side: every call is answered first,
			// unless the node stops meanwhile.
			answered := make(chan struct{})
			go func() {
				calls.Wait()
				close(answered)
			}()
			select {
			case <-answered:
			case <-s.stop:
				err = status.Error(codes.Unavailable, "node stopping")
			}
		}
		results.close()
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
				if !results.push(&meridianpb.BatchResult{Id: call.Id, Code: int32(codes.ResourceExhausted),
					Message: "too many calls in flight on this stream"}, false) {
					return finish(status.Error(codes.ResourceExhausted, "too many calls in flight and results unread on this stream"))
				}
				continue
			}
			calls.Add(1)
			done := func(res *meridianpb.BatchResult) {
				results.push(res, true)
				calls.Done()
			}
			if s.serveAsync(call, r.at, done) {
				continue
			}
			s.workers.run(func() { done(s.serveCall(ctx, call, r.at)) })
		}
	}
}

// serveAsync starts a call that is one request to a group (a locking read,
// a commit, a rollback): done receives its result on the group's goroutine,
// with no goroutine waiting for it, or DEADLINE_EXCEEDED once the call's
// timeout, counted from its arrival at, passes (the group's later answer
// is then dropped, as a unary call's would be; a call already past it is
// not started, except a rollback, whose work frees locks). It reports
// false for other calls.
func (s *Server) serveAsync(call *meridianpb.BatchCall, at time.Time, deliver func(*meridianpb.BatchResult)) bool {
	res := &meridianpb.BatchResult{Id: call.Id}
	var g *node.Group
	var req txn.Request
	var err error
	var respond func(node.Reply)
	rollback := false
	switch c := call.Call.(type) {
	case *meridianpb.BatchCall_Read:
		g, req, err = s.readRequest(c.Read)
		respond = func(rep node.Reply) { res.Result = &meridianpb.BatchResult_Read{Read: s.readResponse(rep)} }
	case *meridianpb.BatchCall_Commit:
		g, req, err = s.commitRequest(c.Commit)
		respond = func(rep node.Reply) { res.Result = &meridianpb.BatchResult_Commit{Commit: commitResponse(rep)} }
	case *meridianpb.BatchCall_Rollback:
		rollback = true
		g, req, err = s.rollbackRequest(c.Rollback)
		respond = func(node.Reply) {
			res.Result = &meridianpb.BatchResult_Rollback{Rollback: &meridianpb.RollbackResponse{}}
		}
	default:
		return false
	}
	// Exactly one of the group's answer and the timeout is delivered.
	var once atomic.Bool
	done := func(r *meridianpb.BatchResult) {
		if once.CompareAndSwap(false, true) {
			deliver(r)
		}
	}
	if err != nil {
		done(setError(res, err))
		return true
	}
	var timer *time.Timer // read by the answer, which Submit orders after this
	if call.TimeoutNs > 0 {
		expired := func() {
			done(setError(&meridianpb.BatchResult{Id: call.Id}, status.Error(codes.DeadlineExceeded, "the call's deadline passed")))
		}
		if left := time.Until(at.Add(time.Duration(call.TimeoutNs))); left > 0 {
			timer = time.AfterFunc(left, expired)
		} else {
			expired()
			if !rollback {
				return true
			}
		}
	}
	g.Submit(req, func(rep node.Reply) {
		if timer != nil {
			timer.Stop()
		}
		if err := s.replyError(g, rep, rep.Err); err != nil {
			done(setError(res, err))
			return
		}
		respond(rep)
		done(res)
	})
	return true
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

// resultQueue holds results until the stream's sender takes them. Pushes
// never block: they come from group goroutines. It is bounded: a call
// holds a slot until its result is sent, and results for calls refused a
// slot stop the stream once MaxStreamCalls of them wait.
type resultQueue struct {
	mu      sync.Mutex
	items   []queuedResult
	refused int // items without a slot
	closed  bool
	ready   chan struct{} // capacity 1: items arrived or the queue closed
}

type queuedResult struct {
	r    *meridianpb.BatchResult
	slot bool // holds a slot of the stream's semaphore
}

func newResultQueue() *resultQueue { return &resultQueue{ready: make(chan struct{}, 1)} }

// push queues r, reporting false if the queue is closed or, for a result
// without a slot, full.
func (q *resultQueue) push(r *meridianpb.BatchResult, slot bool) bool {
	q.mu.Lock()
	if q.closed || (!slot && q.refused >= MaxStreamCalls) {
		q.mu.Unlock()
		return false
	}
	if !slot {
		q.refused++
	}
	q.items = append(q.items, queuedResult{r, slot})
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// close drops later pushes; take returns what is queued, then nothing.
func (q *resultQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take waits for results (if wait) and returns them appended to buf, or
// reports false once the queue is closed and empty.
func (q *resultQueue) take(buf []queuedResult, wait bool) ([]queuedResult, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			buf = append(buf, q.items...)
			clear(q.items)
			q.items = q.items[:0]
			q.refused = 0
			q.mu.Unlock()
			return buf, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return buf, false
		}
		if !wait {
			return buf, true
		}
		<-q.ready
	}
}

// sendResults sends queued results in batches of whatever is ready until
// the queue closes, releasing each sent result's slot.
func sendResults(stream meridianpb.Meridian_BatchServer, q *resultQueue, sem <-chan struct{}) error {
	var failed error
	var items []queuedResult
	for {
		var ok bool
		if items, ok = q.take(items[:0], true); !ok {
			return failed
		}
		if len(items) == 1 {
			// Let the calls about to finish deliver first. Without this
			// the loop wins every race, each result goes alone, and the
			// client answers every lone result with a lone call: at 64
			// clients, batches of ~1 call. With it, ~6 per message and
			// ~25% more strong reads per CPU second.
			runtime.Gosched()
			items, _ = q.take(items, false)
		}
		for len(items) > 0 {
			n := min(len(items), maxResults)
			if failed == nil {
				batch := &meridianpb.BatchResponse{Results: make([]*meridianpb.BatchResult, n)}
				for i := range n {
					batch.Results[i] = items[i].r
				}
				failed = stream.Send(batch)
			}
			for _, it := range items[:n] {
				if it.slot {
					<-sem
				}
			}
			items = items[n:]
		}
	}
}

// serveCall runs one call, which arrived at at, as its unary counterpart.
func (s *Server) serveCall(ctx context.Context, call *meridianpb.BatchCall, at time.Time) *meridianpb.BatchResult {
	if call.TimeoutNs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, at.Add(time.Duration(call.TimeoutNs)))
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
		return setError(res, err)
	}
	return res
}

// setError records err in res as a status, with its leader hint.
func setError(res *meridianpb.BatchResult, err error) *meridianpb.BatchResult {
	st := status.Convert(err)
	res.Code, res.Message = int32(st.Code()), st.Message()
	if h, ok := LeaderHintOf(err); ok {
		res.Hint = h
	}
	if st.Code() == codes.OK {
		res.Code = int32(codes.Unknown)
	}
	return res
}
