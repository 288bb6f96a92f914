package processor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// WindowKind is the shape of a windowed table's windows.
type WindowKind uint8

const (
	// TumblingWindows are fixed-size, adjacent, non-overlapping windows
	// aligned to the Unix epoch: every event time is in exactly one.
	TumblingWindows WindowKind = iota + 1
	// HoppingWindows are fixed-size windows that start every Advance, so
	// that an event time is in Size/Advance of them.
	HoppingWindows
	// SessionWindows are per-key periods of activity: a record less than
	// Gap from a key's session extends it, and one that bridges two
	// sessions merges them; one exactly Gap after a session's last record
	// starts a new session.
	SessionWindows
)

// Windows describes the windows of a windowed table, their grace period and
// their retention. Make one with [Tumbling], [Hopping] or [Sessions].
type Windows struct {
	Kind WindowKind
	// Size is the length of tumbling and hopping windows.
	Size time.Duration
	// Advance is the distance between the starts of hopping windows.
	Advance time.Duration
	// Gap is the inactivity that ends a session.
	Gap time.Duration
	// Grace is how long after a window's end records may still arrive for
	// it, in stream time: a record whose window ended more than Grace
	// before the partition's stream time is dropped and counted as late.
	// When the grace period is over the window is closed, and its final
	// result is emitted in [EmitFinal] mode. Default 0.
	Grace time.Duration
	// Retention is how long after its end (in stream time) a window is
	// kept for reads; then it is deleted, in batches, up to the largest of
	// Size, Gap and a 24th of Retention later. It is at least Grace. Default
	// 24h, or Grace if that is longer.
	Retention time.Duration
}

// Tumbling returns tumbling windows of the given size.
func Tumbling(size time.Duration) Windows { return Windows{Kind: TumblingWindows, Size: size} }

// Hopping returns windows of the given size starting every advance.
func Hopping(size, advance time.Duration) Windows {
	return Windows{Kind: HoppingWindows, Size: size, Advance: advance}
}

// Sessions returns session windows closed by inactivity gap.
func Sessions(gap time.Duration) Windows { return Windows{Kind: SessionWindows, Gap: gap} }

// WithGrace returns w with the grace period d.
func (w Windows) WithGrace(d time.Duration) Windows { w.Grace = d; return w }

// WithRetention returns w with the retention d.
func (w Windows) WithRetention(d time.Duration) Windows { w.Retention = d; return w }

// retention returns the effective retention.
func (w Windows) retention() time.Duration {
	if w.Retention > 0 {
		return max(w.Retention, w.Grace)
	}
	return max(24*time.Hour, w.Grace)
}

// Check reports what is wrong with w, if anything.
func (w Windows) Check() error {
	switch w.Kind {
	case TumblingWindows:
		if w.Size <= 0 {
			return fmt.Errorf("tumbling windows of size %v: the size must be positive", w.Size)
		}
	case HoppingWindows:
		if w.Size <= 0 || w.Advance <= 0 || w.Advance > w.Size {
			return fmt.Errorf("hopping windows of size %v advancing by %v: both must be positive, the advance at most the size", w.Size, w.Advance)
		}
	case SessionWindows:
		if w.Gap <= 0 {
			return fmt.Errorf("session windows with gap %v: the gap must be positive", w.Gap)
		}
	default:
		return fmt.Errorf("windows of unknown kind %d: use Tumbling, Hopping or Sessions", w.Kind)
	}
	if w.Grace < 0 || w.Retention < 0 {
		return fmt.Errorf("windows with grace %v and retention %v: neither may be negative", w.Grace, w.Retention)
	}
	if w.Retention > 0 && w.Retention < w.Grace {
		return fmt.Errorf("windows with grace %v and retention %v: a window must be kept at least until it closes", w.Grace, w.Retention)
	}
	return nil
}

// String describes w, as Describe shows it.
func (w Windows) String() string {
	var s string
	switch w.Kind {
	case TumblingWindows:
		s = fmt.Sprintf("tumbling %v", w.Size)
	case HoppingWindows:
		s = fmt.Sprintf("hopping %v every %v", w.Size, w.Advance)
	case SessionWindows:
		s = fmt.Sprintf("sessions gap %v", w.Gap)
	default:
		return "windows(?)"
	}
	return fmt.Sprintf("%s grace %v retention %v", s, w.Grace, w.retention())
}

// windowsOf appends to buf the tumbling or hopping windows that contain
// ts, in order of start, and returns it. Callers pass a small array's
// slice, so that the common case allocates nothing.
func (w Windows) windowsOf(ts time.Time, buf []Window) []Window {
	n := ts.UnixNano()
	size := int64(w.Size)
	adv := size
	if w.Kind == HoppingWindows {
		adv = int64(w.Advance)
	}
	// The earliest window start whose window still contains n, then the
	// later ones up to the latest start at or before n.
	last := n - mod(n, adv)
	first := last - (size-(n-last)-1)/adv*adv
	for s := first; s <= last; s += adv {
		buf = append(buf, Window{Start: time.Unix(0, s).UTC(), End: time.Unix(0, s+size).UTC()})
	}
	return buf
}

// mod is the non-negative remainder, so that times before 1970 align too.
func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Window is the time span [Start, End) of a window. A session's End is its
// last record's time plus the gap: the time at which it ends unless another
// record extends it.
type Window struct {
	Start, End time.Time
}

// String returns "[start, end)" in RFC 3339.
func (w Window) String() string {
	return "[" + w.Start.Format(time.RFC3339Nano) + ", " + w.End.Format(time.RFC3339Nano) + ")"
}

// EmitMode says when a windowed table passes its results to its result
// callback.
type EmitMode uint8

const (
	// EmitUpdates passes every update, from the handler that made it.
	EmitUpdates EmitMode = iota
	// EmitFinal passes each window once, when it closes: when stream time
	// passes its end plus the grace period.
	EmitFinal
)

// String returns "updates" or "final".
func (m EmitMode) String() string {
	if m == EmitFinal {
		return "final"
	}
	return "updates"
}

// WindowHandler receives a windowed table's results: the aggregate of key
// in window w. In [EmitUpdates] mode it runs inside the handler that made
// the update, with its Context; in [EmitFinal] mode it runs as a timer
// callback of the key when the window closes.
type WindowHandler[K, V, A any] func(ctx Context[K, V], key K, w Window, agg A) error

// Windowed is a typed handle on a windowed table of a group: aggregates of
// type A per key and window, kept in the partition's state, changelogged
// and restored like the group table. Get one from topology.Windowed.
type Windowed[K, V, A any] struct {
	name     string
	w        Windows
	values   Codec[A]
	merge    func(a, b A) A
	mode     EmitMode
	onResult WindowHandler[K, V, A]
}

// NewWindowed returns a handle on the windowed table name. It is meant for
// package topology, which validates the arguments.
func NewWindowed[K, V, A any](name string, w Windows, values Codec[A], merge func(a, b A) A, mode EmitMode, onResult WindowHandler[K, V, A]) Windowed[K, V, A] {
	return Windowed[K, V, A]{name: name, w: w, values: values, merge: merge, mode: mode, onResult: onResult}
}

// Name returns the windowed table's name.
func (t Windowed[K, V, A]) Name() string { return t.name }

// CloseTimer and ExpireTimer return the names of the internal timer
// callbacks of the windowed table name: one emits final results, the other
// deletes windows past their retention. Package topology registers them.
func CloseTimer(name string) string  { return "window-close/" + name }
func ExpireTimer(name string) string { return "window-expire/" + name }

// Add updates the windows of the record's key that contain the record's
// event time: fn gets each window's aggregate (found is false for a new
// window) and returns the new one. For session windows the record's
// session is first merged with every session of the key it bridges, with
// the table's merge function. Windows whose grace period is over in stream
// time are left alone and the record is counted as late for them; Add
// reports how many windows it updated.
func (t Windowed[K, V, A]) Add(ctx Context[K, V], fn func(w Window, agg A, found bool) A) (int, error) {
	c := &ctx.c.core
	if err := t.check(c); err != nil {
		return 0, err
	}
	ts := c.rc.Timestamp()
	stream := c.rc.StreamTime()
	if t.w.Kind == SessionWindows {
		return t.addSession(ctx, c, ts, stream, fn)
	}
	updated, late := 0, false
	var buf [4]Window
	for _, w := range t.w.windowsOf(ts, buf[:0]) {
		if t.closed(w, stream) {
			late = true
			continue
		}
		k := windowKey(t.name, c.key, w)
		agg, found, err := t.read(c, k)
		if err != nil {
			return updated, err
		}
		if err := t.write(ctx, c, w, k, fn(w, agg, found), found); err != nil {
			return updated, err
		}
		updated++
	}
	if late {
		c.rc.Late()
	}
	return updated, nil
}

// addSession puts ts in the key's session, merging the sessions it
// bridges.
func (t Windowed[K, V, A]) addSession(ctx Context[K, V], c *core, ts, stream time.Time, fn func(w Window, agg A, found bool) A) (int, error) {
	// In UTC without a monotonic reading, like the windows read back from
	// the state and those of windowsOf, so that one window compares equal
	// however it was obtained.
	w := Window{Start: ts.UTC(), End: ts.Add(t.w.Gap).UTC()}
	if t.closed(w, stream) {
		c.rc.Late()
		return 0, nil
	}
	type session struct {
		w   Window
		key []byte
		agg A
	}
	var merged []session
	err := c.scanState(windowPrefix(t.name, c.key), func(k, v []byte) error {
		sw, ok := parseWindow(k)
		if !ok {
			return fmt.Errorf("windowed table %q: malformed state key %x", t.name, k)
		}
		// Overlapping: the record is less than Gap from the session's
		// records. Windows are half-open, and a session is closed once
		// stream time reaches its End (plus grace): a record exactly Gap
		// after the last one, which moves stream time to End, must not
		// merge, or whether it does would depend on the grace period.
		if !sw.Start.Before(w.End) || !sw.End.After(w.Start) {
			return nil
		}
		if t.closed(sw, stream) {
			return nil // closed sessions are final; the record starts anew
		}
		agg, err := t.values.Decode(v)
		if err != nil {
			return fmt.Errorf("%w windowed table %q: %w", ErrDecode, t.name, err)
		}
		merged = append(merged, session{sw, slices.Clone(k), agg})
		return nil
	})
	if err != nil {
		return 0, c.fail(fmt.Errorf("windowed table %q: %w", t.name, err))
	}
	var agg A
	found := len(merged) > 0
	for i, s := range merged {
		if s.w.Start.Before(w.Start) {
			w.Start = s.w.Start
		}
		if s.w.End.After(w.End) {
			w.End = s.w.End
		}
		if i == 0 {
			agg = s.agg
		} else {
			agg = t.merge(agg, s.agg)
		}
	}
	k := windowKey(t.name, c.key, w)
	same := len(merged) == 1 && bytes.Equal(merged[0].key, k)
	for _, s := range merged {
		if bytes.Equal(s.key, k) {
			continue
		}
		c.setState(s.key, nil)
		t.timers(c, s.w, false)
	}
	if err := t.write(ctx, c, w, k, fn(w, agg, found), same); err != nil {
		return 0, err
	}
	return 1, nil
}

// closed reports whether w's grace period is over at stream time now.
func (t Windowed[K, V, A]) closed(w Window, now time.Time) bool {
	return !now.Before(w.End.Add(t.w.Grace))
}

func (t Windowed[K, V, A]) check(c *core) error {
	if err := c.check(); err != nil {
		return err
	}
	if !slices.Contains(c.scope.windows, t.name) {
		return c.fail(fmt.Errorf("windowed table %q: not a windowed table of group %q", t.name, c.scope.group))
	}
	if c.keyless {
		return c.fail(fmt.Errorf("windowed table %q: a punctuation has no key", t.name))
	}
	return nil
}

func (t Windowed[K, V, A]) read(c *core, k []byte) (agg A, found bool, err error) {
	b, found, err := c.getState(k)
	if err != nil {
		return agg, false, c.fail(fmt.Errorf("windowed table %q: read: %w", t.name, err))
	}
	if !found {
		return agg, false, nil
	}
	agg, err = t.values.Decode(b)
	if err != nil {
		return agg, false, c.fail(fmt.Errorf("%w windowed table %q: %w", ErrDecode, t.name, err))
	}
	return agg, true, nil
}

// write stores a window's new aggregate, sets its timers if it is new and
// passes the update on in EmitUpdates mode.
func (t Windowed[K, V, A]) write(ctx Context[K, V], c *core, w Window, k []byte, agg A, existed bool) error {
	b, err := t.values.Encode(agg)
	if err != nil {
		return c.fail(fmt.Errorf("windowed table %q: %w", t.name, err))
	}
	if b == nil {
		b = []byte{}
	}
	c.setState(k, b)
	if !existed {
		t.timers(c, w, true)
	}
	if t.mode == EmitUpdates && t.onResult != nil {
		if err := t.onResult(ctx, ctx.c.key, w, agg); err != nil {
			return c.fail(fmt.Errorf("windowed table %q: result of %v: %w", t.name, w, err))
		}
	}
	return nil
}

// timers sets or removes the timers of window w of the current key.
func (t Windowed[K, V, A]) timers(c *core, w Window, add bool) {
	if t.mode == EmitFinal && t.onResult != nil {
		c.timer(RawTimer{Name: CloseTimer(t.name), Kind: StreamTime, At: w.End.Add(t.w.Grace), Key: c.key}, add)
	}
	if add {
		// One expiry timer per key and bucket of window ends, not per
		// window: windows are deleted up to a bucket late, but a key's
		// new windows mostly find their timer set already, which saves a
		// state write per window.
		c.timer(RawTimer{Name: ExpireTimer(t.name), Kind: StreamTime, At: t.expiry(w.End), Key: c.key}, true)
	}
}

// expiry returns the time of the expiry timer of windows ending at end:
// the end of its bucket plus the retention.
func (t Windowed[K, V, A]) expiry(end time.Time) time.Time {
	b := int64(t.expiryBucket())
	n := end.UnixNano()
	if m := mod(n, b); m != 0 {
		n += b - m
	}
	return time.Unix(0, n).UTC().Add(t.w.retention())
}

// expiryBucket is the granularity of expiry timers: a 24th of the
// retention, and at least the window size.
func (t Windowed[K, V, A]) expiryBucket() time.Duration {
	return max(t.w.retention()/24, t.w.Size, t.w.Gap, time.Millisecond)
}

// Get returns the aggregate of the record's key in window w.
func (t Windowed[K, V, A]) Get(ctx Context[K, V], w Window) (agg A, found bool) {
	c := &ctx.c.core
	if t.check(c) != nil {
		return agg, false
	}
	agg, found, _ = t.read(c, windowKey(t.name, c.key, w))
	return agg, found
}

// Range calls fn for each window of the record's key that starts in
// [from, to), in order of start.
func (t Windowed[K, V, A]) Range(ctx Context[K, V], from, to time.Time, fn func(w Window, agg A) error) error {
	c := &ctx.c.core
	if err := t.check(c); err != nil {
		return err
	}
	return t.each(c, func(w Window, agg A) error {
		if w.Start.Before(from) || !w.Start.Before(to) {
			return nil
		}
		return fn(w, agg)
	})
}

// each calls fn for every window of the current key.
func (t Windowed[K, V, A]) each(c *core, fn func(w Window, agg A) error) error {
	err := c.scanState(windowPrefix(t.name, c.key), func(k, v []byte) error {
		w, ok := parseWindow(k)
		if !ok {
			return c.fail(fmt.Errorf("windowed table %q: malformed state key %x", t.name, k))
		}
		agg, err := t.values.Decode(v)
		if err != nil {
			return c.fail(fmt.Errorf("%w windowed table %q: %w", ErrDecode, t.name, err))
		}
		return fn(w, agg)
	})
	return err
}

// CloseHandler returns the timer callback that passes the final results of
// windows ending at a close timer's time (less the grace period).
func (t Windowed[K, V, A]) CloseHandler() TimerHandler[K, V] {
	return func(ctx Context[K, V], key K, at time.Time) error {
		end := at.Add(-t.w.Grace)
		c := &ctx.c.core
		return t.each(c, func(w Window, agg A) error {
			if !w.End.Equal(end) || t.onResult == nil {
				return nil
			}
			if err := t.onResult(ctx, key, w, agg); err != nil {
				return c.fail(fmt.Errorf("windowed table %q: final result of %v: %w", t.name, w, err))
			}
			return nil
		})
	}
}

// ExpireHandler returns the timer callback that deletes the windows of
// its key whose retention is over at the timer's time.
func (t Windowed[K, V, A]) ExpireHandler() TimerHandler[K, V] {
	return func(ctx Context[K, V], key K, at time.Time) error {
		c := &ctx.c.core
		return c.scanState(windowPrefix(t.name, c.key), func(k, _ []byte) error {
			if w, ok := parseWindow(k); ok && !w.End.Add(t.w.retention()).After(at) {
				c.setState(slices.Clone(k), nil)
			}
			return nil
		})
	}
}

// The state key of a window: the table's name and the record's key, each
// length-prefixed so that one key's windows are a prefix of their own, then
// the window's start and end as order-preserving big-endian integers, so a
// scan of the prefix returns a key's windows in order of start.
//
//	uint16 len(name) | name | uint32 len(key) | key | start | end
func windowPrefix(name string, key []byte) []byte {
	b := make([]byte, 0, 2+len(name)+4+len(key)+16)
	b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(key)))
	return append(b, key...)
}

func windowKey(name string, key []byte, w Window) []byte {
	b := windowPrefix(name, key)
	b = binary.BigEndian.AppendUint64(b, orderedTime(w.Start))
	return binary.BigEndian.AppendUint64(b, orderedTime(w.End))
}

// parseWindow returns the window of a state key made by windowKey.
func parseWindow(k []byte) (Window, bool) {
	if len(k) < 2 {
		return Window{}, false
	}
	n := int(binary.BigEndian.Uint16(k))
	if len(k) < 2+n+4 {
		return Window{}, false
	}
	kl := int(binary.BigEndian.Uint32(k[2+n:]))
	rest := k[2+n+4:]
	if len(rest) != kl+16 {
		return Window{}, false
	}
	rest = rest[kl:]
	return Window{Start: fromOrdered(binary.BigEndian.Uint64(rest)), End: fromOrdered(binary.BigEndian.Uint64(rest[8:]))}, true
}

// orderedTime maps a time to a uint64 whose big-endian bytes sort like the
// times, negative Unix times included.
func orderedTime(t time.Time) uint64 { return uint64(t.UnixNano()) ^ (1 << 63) }

func fromOrdered(u uint64) time.Time {
	return time.Unix(0, int64(u^(1<<63))).UTC()
}

// OrderedTime exposes the time encoding of state keys to runtimes, which
// lay out timers with it: big-endian, its bytes sort like the times.
func OrderedTime(t time.Time) uint64 { return orderedTime(t) }

// FromOrderedTime is the inverse of OrderedTime.
func FromOrderedTime(u uint64) time.Time { return fromOrdered(u) }

// WindowStatePrefix returns the prefix of the state keys of the windows of
// key in the windowed table name: a scan of the partition's state with it
// visits the key's windows in order of start. It lets test drivers and
// tools read windowed tables without running a handler.
func WindowStatePrefix(name string, key []byte) []byte { return windowPrefix(name, key) }

// ParseWindowStateKey returns the window of a windowed table's state key,
// one beginning with a [WindowStatePrefix]; ok is false if k is not laid
// out like one.
func ParseWindowStateKey(k []byte) (w Window, ok bool) { return parseWindow(k) }

// Values returns the codec of the table's aggregates, with which its state
// values are encoded.
func (t Windowed[K, V, A]) Values() Codec[A] { return t.values }
