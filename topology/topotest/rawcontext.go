package topotest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// rawContext is the driver's processor.RawContext: tables are maps, topics
// are slices, and every write succeeds at once.
type rawContext struct {
	d     *Driver
	group *topology.GroupSpec
	rec   Record
}

var _ processor.RawContext = (*rawContext)(nil)

func (c *rawContext) Context() context.Context    { return c.d.ctx }
func (c *rawContext) Topic() string               { return c.rec.Topic }
func (c *rawContext) Partition() int32            { return c.rec.Partition }
func (c *rawContext) Offset() int64               { return c.rec.Offset }
func (c *rawContext) Timestamp() time.Time        { return c.rec.Timestamp }
func (c *rawContext) Headers() []processor.Header { return c.rec.Headers }

func (c *rawContext) Row() ([]byte, bool, error) {
	return c.get(c.group.Name, c.rec.Key)
}

func (c *rawContext) SetRow(value []byte) error {
	if c.group.Table == "" {
		return fmt.Errorf("topotest: group %q has no table", c.group.Name)
	}
	c.d.table(c.group.Name)[string(c.rec.Key)] = slices.Clone(value)
	c.write(c.group.Table, c.rec.Key, value, nil)
	return nil
}

func (c *rawContext) DeleteRow() error {
	if c.group.Table == "" {
		return fmt.Errorf("topotest: group %q has no table", c.group.Name)
	}
	delete(c.d.tables[c.group.Name], string(c.rec.Key))
	c.write(c.group.Table, c.rec.Key, nil, nil)
	return nil
}

func (c *rawContext) JoinRow(group string) ([]byte, bool, error) {
	if !slices.ContainsFunc(c.group.Joins, func(r topology.TableRef) bool { return r.Group == group }) {
		return nil, false, fmt.Errorf("topotest: group %q does not join %q", c.group.Name, group)
	}
	return c.get(group, c.rec.Key)
}

func (c *rawContext) LookupRow(group string, key []byte) ([]byte, bool, error) {
	if !slices.ContainsFunc(c.group.Lookups, func(r topology.TableRef) bool { return r.Group == group }) {
		return nil, false, fmt.Errorf("topotest: group %q does not look up %q", c.group.Name, group)
	}
	return c.get(group, key)
}

func (c *rawContext) Emit(topic string, key, value []byte, headers []processor.Header) error {
	if !slices.Contains(c.group.Outputs, topic) {
		return fmt.Errorf("topotest: %q is not an output of group %q", topic, c.group.Name)
	}
	c.write(topic, key, value, headers)
	return nil
}

func (c *rawContext) Loopback(key, value []byte) error {
	if c.group.Loop == "" {
		return fmt.Errorf("topotest: group %q has no loop", c.group.Name)
	}
	c.write(c.group.Loop, key, value, nil)
	return nil
}

// get returns a copy of a row, as a store would.
func (c *rawContext) get(group string, key []byte) ([]byte, bool, error) {
	v, ok := c.d.tables[group][string(key)]
	return slices.Clone(v), ok, nil
}

// write appends a record the handler caused, with the timestamp of the
// record that caused it.
func (c *rawContext) write(topic string, key, value []byte, headers []processor.Header) {
	c.d.append(Record{
		Topic:     topic,
		Timestamp: c.rec.Timestamp,
		Key:       slices.Clone(key),
		Value:     slices.Clone(value),
		Headers:   slices.Clone(headers),
		Group:     c.group.Name,
	})
}
