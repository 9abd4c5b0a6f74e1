package besclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bes-cli/bes/bepfile"
)

// keywords returns the notification_keywords of a tool stream's first
// request: the recorded ones, or Bazel's, then Options.Keywords.
func (p *Publisher) keywords(s *Stream) []string {
	var kw []string
	if pi := s.Info.Publish; pi != nil && len(pi.NotificationKeywords) > 0 {
		kw = append(kw, pi.NotificationKeywords...)
	} else {
		cmd := ""
		for i := range s.Events {
			if s.Events[i].Raw != nil {
				continue
			}
			if pk, err := bepfile.Peek(s.Events[i].Payload); err == nil && pk.Kind() == "started" {
				cmd = startedCommand(pk.Payload)
				break
			}
		}
		if cmd != "" {
			kw = append(kw, "command_name="+cmd)
		}
		kw = append(kw, "protocol_name=BEP")
	}
	return append(kw, p.opts.Keywords...)
}

func (p *Publisher) projectID(s *Stream) string {
	if p.opts.ProjectID != "" {
		return p.opts.ProjectID
	}
	if pi := s.Info.Publish; pi != nil {
		return pi.ProjectID
	}
	return ""
}

// toolRequest makes the request for event i of a tool stream.
func (p *Publisher) toolRequest(s *Stream, i int, keywords []string) (*buildpb.PublishBuildToolEventStreamRequest, error) {
	obe, err := s.Events[i].OrderedBuildEvent(s.Info)
	if err != nil {
		return nil, fmt.Errorf("stream %s, event %d: %w", s.Info.Key, i, err)
	}
	req := &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: obe, ProjectId: p.projectID(s)}
	if i == 0 {
		req.NotificationKeywords = keywords
		if pi := s.Info.Publish; pi != nil {
			req.CheckPrecedingLifecycleEventsPresent = pi.CheckPrecedingLifecycleEventsPresent
		}
	}
	return req, nil
}

// errProtocol marks a server that broke the protocol; it is not retried.
var errProtocol = errors.New("protocol error")

// sendTool publishes a tool stream, retrying as Bazel does: a call that
// breaks is followed, after a backoff, by a new call that re-sends every
// event not yet acknowledged.
func (p *Publisher) sendTool(ctx context.Context, s *Stream, r *Result) {
	keywords := p.keywords(s)
	failures := 0
	for {
		before := r.Acked
		err := p.toolCall(ctx, s, r, keywords)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			r.Err = ctx.Err()
			return
		}
		if !retryable(err) || errors.Is(err, errProtocol) {
			r.Err = explain(err)
			return
		}
		if p.opts.Retries < 0 || failures >= p.opts.Retries {
			r.Err = fmt.Errorf("giving up after %d attempts: %w", r.Attempts, err)
			return
		}
		d := p.backoff(failures)
		p.logf("stream %s: %v; retrying in %v from sequence number %d", s.Info.Key, status.Convert(err).Message(), d.Round(1e6), seqAt(s, r.Acked))
		if err := sleep(ctx, d); err != nil {
			r.Err = err
			return
		}
		if r.Acked > before {
			failures = 0
		} else {
			failures++
		}
	}
}

func seqAt(s *Stream, i int) int64 {
	if i < len(s.Events) {
		return eventSeq(s, i)
	}
	return 0
}

// eventSeq returns the sequence number event i is sent with.
func eventSeq(s *Stream, i int) int64 { return s.Events[i].Seq }

// ackState is shared between a call's sender and its receiver.
type ackState struct {
	mu    sync.Mutex
	acked int           // events acknowledged (an index into the stream)
	more  chan struct{} // signalled (without blocking) on each ack
	done  chan struct{} // closed when the receiver stops
	err   error         // why the receiver stopped; io.EOF: the server ended the call OK
}

func (a *ackState) get() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acked
}

// toolCall makes one PublishBuildToolEventStream call, sending the events
// from the first unacknowledged one. It returns nil when every event is
// acknowledged and the server ended the call OK.
func (p *Publisher) toolCall(ctx context.Context, s *Stream, r *Result, keywords []string) error {
	n := len(s.Events)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.Attempts++
	call, err := p.client.PublishBuildToolEventStream(cctx)
	if err != nil {
		return err
	}
	st := &ackState{acked: r.Acked, more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		for {
			resp, err := call.Recv()
			if err != nil {
				st.mu.Lock()
				st.err = err
				st.mu.Unlock()
				return
			}
			st.mu.Lock()
			i := st.acked
			switch {
			case i >= n:
				st.err = fmt.Errorf("stream %s: server acknowledged sequence number %d after the last event: %w", s.Info.Key, resp.GetSequenceNumber(), errProtocol)
			case resp.GetSequenceNumber() != eventSeq(s, i):
				st.err = fmt.Errorf("stream %s: server acknowledged sequence number %d, want %d: %w", s.Info.Key, resp.GetSequenceNumber(), eventSeq(s, i), errProtocol)
			case resp.GetStreamId() != nil && bepfile.Key(resp.GetStreamId()) != s.Info.Key:
				st.err = fmt.Errorf("stream %s: server acknowledged an event of stream %s: %w", s.Info.Key, bepfile.Key(resp.GetStreamId()), errProtocol)
			default:
				st.acked++
			}
			failed := st.err != nil
			st.mu.Unlock()
			if failed {
				cancel()
				return
			}
			select {
			case st.more <- struct{}{}:
			default:
			}
		}
	}()

	sendErr := func() error {
		for next := r.Acked; next < n; next++ {
			for next-st.get() >= p.opts.Window {
				select {
				case <-st.more:
				case <-st.done:
					return nil
				case <-cctx.Done():
					return cctx.Err()
				}
			}
			req, err := p.toolRequest(s, next, keywords)
			if err != nil {
				return err
			}
			if err := call.Send(req); err != nil {
				// io.EOF: the call ended; its status comes from Recv.
				return nil
			}
			if next >= r.Sent {
				r.Sent = next + 1
			} else {
				r.Resent++
			}
		}
		return call.CloseSend()
	}()
	if sendErr != nil {
		cancel()
	}
	<-st.done
	r.Acked = st.get()
	st.mu.Lock()
	rerr := st.err
	st.mu.Unlock()
	switch {
	case sendErr != nil && !errors.Is(sendErr, context.Canceled):
		return sendErr
	case rerr == io.EOF && r.Acked == n:
		return nil
	case rerr == io.EOF:
		return status.Errorf(codes.FailedPrecondition, "stream %s: the server ended the call with %d of %d events unacknowledged", s.Info.Key, n-r.Acked, n)
	}
	return rerr
}

// sendLifecycle publishes the events idx of a lifecycle stream, one
// PublishLifecycleEvent call each, retrying each as Bazel does.
func (p *Publisher) sendLifecycle(ctx context.Context, s *Stream, idx []int, r *Result) {
	for _, i := range idx {
		if r.Err != nil {
			return
		}
		obe, err := s.Events[i].OrderedBuildEvent(s.Info)
		if err != nil {
			r.Err = fmt.Errorf("stream %s, event %d: %w", s.Info.Key, i, err)
			return
		}
		req := &buildpb.PublishLifecycleEventRequest{
			ServiceLevel: buildpb.PublishLifecycleEventRequest_INTERACTIVE,
			BuildEvent:   obe,
			ProjectId:    p.projectID(s),
		}
		if pi := s.Info.Publish; pi != nil {
			req.NotificationKeywords = pi.NotificationKeywords
			req.CheckPrecedingLifecycleEventsPresent = pi.CheckPrecedingLifecycleEventsPresent
		}
		r.Sent++
		for failures := 0; ; failures++ {
			r.Attempts++
			_, err = p.client.PublishLifecycleEvent(ctx, req)
			if err == nil {
				r.Acked++
				break
			}
			if ctx.Err() != nil {
				r.Err = ctx.Err()
				return
			}
			if !retryable(err) {
				r.Err = explain(err)
				return
			}
			if p.opts.Retries < 0 || failures >= p.opts.Retries {
				r.Err = fmt.Errorf("giving up after %d attempts: %w", failures+1, err)
				return
			}
			d := p.backoff(failures)
			p.logf("stream %s: %v; retrying sequence number %d in %v", s.Info.Key, status.Convert(err).Message(), obe.GetSequenceNumber(), d.Round(1e6))
			if err := sleep(ctx, d); err != nil {
				r.Err = err
				return
			}
			r.Resent++
		}
	}
}
