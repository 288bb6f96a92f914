package runtime

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/state"
)

// A group's state store holds three key spaces, told apart by their first
// byte: the processor's state (windowed tables), the timers, and the
// partition's stream time.
//
//	0x00 | key the processor chose
//	0x01 | kind | uint64 time (processor.OrderedTime) | uint16 len(name) | name | key
//	0x02                   the stream time, a uint64 (processor.OrderedTime)
//
// A timer's key sorts by clock, then time, then name and key, so the
// timers of one clock are stored in the order they fire; its value is
// empty.
const (
	stateData  byte = 0x00
	stateTimer byte = 0x01
)

// streamTimeKey is the state key of the partition's stream time.
var streamTimeKey = []byte{0x02}

// loadState reads what a restored state store holds for the partition to
// start: its timers (one range of the store) and the stream time it was
// left at (one key). The filter of the store's keys it returns builds
// itself as the partition runs (see keyFilter): nothing here reads the
// whole store.
func loadState(st state.Store) (exists *keyFilter, timers []processor.RawTimer, stream time.Time, err error) {
	it := st.Iterate([]byte{stateTimer}, []byte{stateTimer + 1})
	defer it.Close()
	for it.Next() {
		tm, err := parseTimerKey(it.Key())
		if err != nil {
			return nil, nil, time.Time{}, err
		}
		timers = append(timers, tm)
	}
	if err := it.Err(); err != nil {
		return nil, nil, time.Time{}, err
	}
	v, ok, err := st.Get(streamTimeKey)
	switch {
	case err != nil:
		return nil, nil, time.Time{}, err
	case ok && len(v) != 8:
		return nil, nil, time.Time{}, fmt.Errorf("malformed stream time %x", v)
	case ok:
		stream = processor.FromOrderedTime(binary.BigEndian.Uint64(v))
	}
	return newKeyFilter(st), timers, stream, nil
}

func dataKey(key []byte) []byte {
	return append([]byte{stateData}, key...)
}

func timerKey(t processor.RawTimer) []byte {
	b := make([]byte, 0, 2+8+2+len(t.Name)+len(t.Key))
	b = append(b, stateTimer, byte(t.Kind))
	b = binary.BigEndian.AppendUint64(b, processor.OrderedTime(t.At))
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.Name)))
	b = append(b, t.Name...)
	return append(b, t.Key...)
}

func parseTimerKey(k []byte) (processor.RawTimer, error) {
	if len(k) < 12 || k[0] != stateTimer || k[1] > byte(processor.WallClock) {
		return processor.RawTimer{}, fmt.Errorf("malformed timer key %x", k)
	}
	n := int(binary.BigEndian.Uint16(k[10:]))
	if len(k) < 12+n {
		return processor.RawTimer{}, fmt.Errorf("malformed timer key %x", k)
	}
	return processor.RawTimer{
		Kind: processor.TimeKind(k[1]),
		At:   processor.FromOrderedTime(binary.BigEndian.Uint64(k[2:])),
		Name: string(k[12 : 12+n]),
		Key:  append([]byte{}, k[12+n:]...),
	}, nil
}
