package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// retry calls fn until it succeeds, fails with an error that is not
// transient, ctx ends, or it has been failing for cfg.DeliveryTimeout: a
// broker restart, or a coordinator that moves, is waited out rather than
// reported. The admin client's own retries of a call are bounded by the
// delivery timeout too (kgo.RetryTimeout).
//
// fn's errors say what failed; retry adds for how long.
func retry(ctx context.Context, cfg Config, log *slog.Logger, fn func(ctx context.Context) error) error {
	start := time.Now()
	wait := 50 * time.Millisecond
	for tries := 1; ; tries++ {
		err := fn(ctx)
		if err == nil || ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		failing := time.Since(start)
		if failing >= cfg.DeliveryTimeout && transient(err) {
			return fmt.Errorf("%w (%w: failing for %v, %d tries)", err, ErrDeliveryTimeout, failing.Round(time.Millisecond), tries)
		}
		if !transient(err) {
			return err
		}
		if tries == 1 {
			log.Warn("retrying until the delivery timeout", "err", err, "timeout", cfg.DeliveryTimeout)
		}
		t := time.NewTimer(min(wait, cfg.DeliveryTimeout-failing))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (%w after failing for %v)", err, ctx.Err(), time.Since(start).Round(time.Millisecond))
		}
		wait = min(2*wait, time.Second)
	}
}

// transient reports whether err may go away by itself: the broker is
// unreachable, restarting or not (yet) the leader or coordinator.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrUnknownTopic), errors.Is(err, ErrOffsetOutOfRange),
		errors.Is(err, ErrNotCopartitioned), errors.Is(err, ErrGenerationEnded),
		errors.Is(err, kgo.ErrClientClosed):
		return false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	if errors.Is(err, errRebalancing) {
		return true
	}
	if _, ok := errors.AsType[*kgo.ErrFirstReadEOF](err); ok {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	// A Kafka error code: Kafka's own list says which are retriable
	// (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, LEADER_NOT_AVAILABLE,
	// REQUEST_TIMED_OUT, ...). An unknown topic is not waited for here:
	// the calls report it as ErrUnknownTopic.
	if e, ok := errors.AsType[*kerr.Error](err); ok && e != kerr.UnknownTopicOrPartition {
		return e.Retriable
	}
	return false
}
