package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// positionKind says how a position in a partition is given.
type positionKind int

const (
	positionStart  positionKind = iota // the log start offset
	positionEnd                        // the log end offset (the next record's)
	positionOffset                     // an absolute offset, the same in every partition
	positionTime                       // the first record at or after a timestamp
)

// position is where to start consuming (consume --from) or where to move a
// group's offsets (groups reset-offsets --to).
type position struct {
	kind   positionKind
	offset int64 // positionOffset
	millis int64 // positionTime: unix milliseconds
}

// positionHelp documents the forms parsePosition accepts.
const positionHelp = "OFFSET (a number: that offset in every partition), or TIMESTAMP: " +
	"RFC 3339 (2026-01-02T15:04:05Z, 2026-01-02T15:04:05.123+01:00) or unix milliseconds after an @ (@1767366245000); " +
	"a timestamp picks each partition's first record at or after it"

// parsePosition parses s: the start (beginning, earliest, start), the end
// (end, latest), an offset or a timestamp, as positionHelp says. consume
// --from documents the first names, groups reset-offsets --to Kafka's
// second; both take all.
func parsePosition(s string) (position, error) {
	switch s {
	case "beginning", "earliest", "start":
		return position{kind: positionStart}, nil
	case "end", "latest":
		return position{kind: positionEnd}, nil
	}
	if ms, ok := strings.CutPrefix(s, "@"); ok {
		n, err := strconv.ParseInt(ms, 10, 64)
		if err != nil || n < 0 {
			return position{}, fmt.Errorf("%q: want unix milliseconds after the @", s)
		}
		return position{kind: positionTime, millis: n}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return position{}, fmt.Errorf("%q: an offset cannot be negative", s)
		}
		return position{kind: positionOffset, offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return position{kind: positionTime, millis: t.UnixMilli()}, nil
	}
	return position{}, fmt.Errorf("%q is not a position: want beginning, end, an offset, an RFC 3339 timestamp or @unix-milliseconds", s)
}

// kgoOffset is p as franz-go's consumer takes it.
func (p position) kgoOffset() kgo.Offset {
	switch p.kind {
	case positionEnd:
		return kgo.NewOffset().AtEnd()
	case positionOffset:
		return kgo.NewOffset().At(p.offset)
	case positionTime:
		return kgo.NewOffset().AfterMilli(p.millis)
	}
	return kgo.NewOffset().AtStart()
}
