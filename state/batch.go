package state

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Batch collects writes to apply atomically with Store.Apply. The zero value
// is an empty batch ready to use. A Batch is meant to be reused: Reset keeps
// its buffers, so a steady stream of batches allocates nothing beyond growth.
// A Batch is not safe for concurrent use.
type Batch struct {
	// data holds the operations back to back in the layout of a LevelDB
	// write batch's records, the key already carrying the LevelDB store's
	// row prefix:
	//
	//	kind (0 delete, 1 set) | uvarint 1+len(key) | dataPrefix | key | [uvarint len(value) | value]
	//
	// so that the LevelDB store hands it to LevelDB as it is, without a
	// copy per key. ops point into it by offset, not by slice, so that
	// data can grow without fixing up ops.
	data          []byte
	ops           []batchOp
	bytes         int // keys and values, without framing
	checkpoint    int64
	hasCheckpoint bool
}

type batchOp struct {
	keyOff, keyLen, valueOff, valueLen int32
	del                                bool
}

// LevelDB's write-batch record kinds.
const (
	recDelete byte = 0
	recSet    byte = 1
)

// Set records that key is to be set to value. Both are copied, so the caller
// may reuse them at once. A nil value sets an empty value: the key is present.
func (b *Batch) Set(key, value []byte) {
	b.data = append(b.data, recSet)
	b.data = binary.AppendUvarint(b.data, uint64(1+len(key)))
	b.data = append(b.data, dataPrefix)
	op := batchOp{keyOff: int32(len(b.data)), keyLen: int32(len(key))}
	b.data = append(b.data, key...)
	b.data = binary.AppendUvarint(b.data, uint64(len(value)))
	op.valueOff, op.valueLen = int32(len(b.data)), int32(len(value))
	b.data = append(b.data, value...)
	b.ops = append(b.ops, op)
	b.bytes += len(key) + len(value)
}

// Delete records that key is to be deleted. Deleting a missing key is not an
// error. key is copied.
func (b *Batch) Delete(key []byte) {
	b.data = append(b.data, recDelete)
	b.data = binary.AppendUvarint(b.data, uint64(1+len(key)))
	b.data = append(b.data, dataPrefix)
	op := batchOp{keyOff: int32(len(b.data)), keyLen: int32(len(key)), del: true}
	b.data = append(b.data, key...)
	b.ops = append(b.ops, op)
	b.bytes += len(key)
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

// Size returns the bytes of the keys and values in the batch, for callers
// that bound batches by memory.
func (b *Batch) Size() int { return b.bytes }

// Reset empties the batch, keeping its buffers for reuse.
func (b *Batch) Reset() {
	b.data = b.data[:0]
	b.ops = b.ops[:0]
	b.bytes = 0
	b.checkpoint = 0
	b.hasCheckpoint = false
}

// op returns operation i. The slices alias the batch's buffer.
func (b *Batch) op(i int) (key, value []byte, del bool) {
	o := b.ops[i]
	k, v := int(o.keyOff), int(o.valueOff)
	key = b.data[k : k+int(o.keyLen) : k+int(o.keyLen)]
	if !o.del {
		value = b.data[v : v+int(o.valueLen) : v+int(o.valueLen)]
	}
	return key, value, o.del
}

var (
	errNegativeCheckpoint = errors.New("negative checkpoint")
	errBatchTooLarge      = errors.New("batch too large")
)

// maxBatchBytes bounds a batch's buffer, whose offsets are 32-bit.
const maxBatchBytes = 1<<31 - 1

// validate reports what makes b impossible to apply, before anything is
// written, so that a rejected batch leaves the store untouched.
func (b *Batch) validate() error {
	if b.hasCheckpoint && b.checkpoint < 0 {
		return fmt.Errorf("state: apply: %w %d", errNegativeCheckpoint, b.checkpoint)
	}
	if len(b.data) > maxBatchBytes {
		return fmt.Errorf("state: apply: %w: %d bytes", errBatchTooLarge, len(b.data))
	}
	return nil
}
