package state

import (
	"errors"
	"fmt"
)

// Batch collects writes to apply atomically with Store.Apply. The zero value
// is an empty batch ready to use. A Batch is meant to be reused: Reset keeps
// its buffers, so a steady stream of batches allocates nothing beyond growth.
// A Batch is not safe for concurrent use.
type Batch struct {
	// data holds every key and value back to back; ops point into it by
	// offset, not by slice, so that data can grow without fixing up ops.
	data          []byte
	ops           []batchOp
	checkpoint    int64
	hasCheckpoint bool
}

type batchOp struct {
	off, keyLen, valueLen int
	del                   bool
}

// Set records that key is to be set to value. Both are copied, so the caller
// may reuse them at once. A nil value sets an empty value: the key is present.
func (b *Batch) Set(key, value []byte) {
	b.ops = append(b.ops, batchOp{off: len(b.data), keyLen: len(key), valueLen: len(value)})
	b.data = append(b.data, key...)
	b.data = append(b.data, value...)
}

// Delete records that key is to be deleted. Deleting a missing key is not an
// error. key is copied.
func (b *Batch) Delete(key []byte) {
	b.ops = append(b.ops, batchOp{off: len(b.data), keyLen: len(key), del: true})
	b.data = append(b.data, key...)
}

// SetCheckpoint records the changelog offset to store with the batch: the
// offset of the next changelog record to replay, that is, one past the last
// record whose effect this batch (and the batches before it) contains.
// It must not be negative. A later call replaces an earlier one; a batch
// without a checkpoint leaves the stored checkpoint unchanged.
func (b *Batch) SetCheckpoint(offset int64) {
	b.checkpoint = offset
	b.hasCheckpoint = true
}

// Len returns the number of Set and Delete operations in the batch. The
// checkpoint is not counted.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its buffers for reuse.
func (b *Batch) Reset() {
	b.data = b.data[:0]
	b.ops = b.ops[:0]
	b.checkpoint = 0
	b.hasCheckpoint = false
}

// op returns operation i. The slices alias the batch's buffer.
func (b *Batch) op(i int) (key, value []byte, del bool) {
	o := b.ops[i]
	key = b.data[o.off : o.off+o.keyLen : o.off+o.keyLen]
	value = b.data[o.off+o.keyLen : o.off+o.keyLen+o.valueLen : o.off+o.keyLen+o.valueLen]
	return key, value, o.del
}

var errNegativeCheckpoint = errors.New("negative checkpoint")

// validate reports what makes b impossible to apply, before anything is
// written, so that a rejected batch leaves the store untouched.
func (b *Batch) validate() error {
	if b.hasCheckpoint && b.checkpoint < 0 {
		return fmt.Errorf("state: apply: %w %d", errNegativeCheckpoint, b.checkpoint)
	}
	return nil
}
