package txn

import "github.com/runnel-io/runnel/broker/internal/clock"

// Clock is the source of time and timers for transaction timeouts and retries. Tests inject
// clock.Fake to move time forward instead of sleeping.
type Clock = clock.Clock

// Timer is a pending call scheduled by Clock.AfterFunc.
type Timer = clock.Timer
