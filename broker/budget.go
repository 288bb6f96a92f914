package broker

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// memBudget bounds the memory that requests take before the broker has
// decided anything about them (Config.MaxInflightBytes): request frames
// being read and handled, and record batches being decompressed for
// validation. Each has half of the budget, so that a request holding
// frame budget while it waits for decompression budget cannot starve the
// decompressions it waits for: a decompression holds its budget only while
// it runs, and waits on nothing. Waiting is first come, first served, so a
// large request is not overtaken forever by small ones.
type memBudget struct {
	frames, decompress *semaphore.Weighted
	half               int64
}

func newMemBudget(total int64) *memBudget {
	half := total / 2
	return &memBudget{
		frames:     semaphore.NewWeighted(half),
		decompress: semaphore.NewWeighted(half),
		half:       half,
	}
}

// acquire waits until n bytes (at most the half, so that any request fits
// alone) of s are free and takes them; the returned function gives them
// back. It fails only when ctx ends.
func (m *memBudget) acquire(ctx context.Context, s *semaphore.Weighted, n int64) (release func(), err error) {
	n = min(max(n, 1), m.half)
	if err := s.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { s.Release(n) }, nil
}
