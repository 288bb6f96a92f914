package broker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/uuid"
)

// metaFile is the broker's own state in the data directory, beside the
// storage engine's topics:
//
//	{"cluster_id": "<22 base64url chars>", "producer_id_block_end": N}
//
// cluster_id is made on first start and kept, so that clients see one
// cluster across restarts. producer_id_block_end bounds the producer ids
// handed out so far (see producerIDs).
const metaFile = "broker.json"

type brokerMeta struct {
	ClusterID          string `json:"cluster_id"`
	ProducerIDBlockEnd int64  `json:"producer_id_block_end"`
}

// producerIDBlock is how many producer ids are reserved by one write of the
// meta file, so that InitProducerId rarely waits for an fsync.
const producerIDBlock = 1000

// producerIDs allocates producer ids that are never reused, even across
// crashes: before an id of a block is handed out, the block's end is
// durable in the meta file, and a restart continues from that end (the
// unused rest of the block is skipped).
type producerIDs struct {
	path string

	mu   sync.Mutex
	meta brokerMeta
	next int64
}

// loadMeta reads the meta file in dir, creating it (with a new cluster id)
// if it does not exist.
func loadMeta(dir string) (*producerIDs, error) {
	p := &producerIDs{path: filepath.Join(dir, metaFile)}
	b, err := os.ReadFile(p.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		id := uuid.New()
		p.meta.ClusterID = base64.RawURLEncoding.EncodeToString(id[:])
		if err := p.save(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("read broker metadata: %w", err)
	default:
		if err := json.Unmarshal(b, &p.meta); err != nil {
			return nil, fmt.Errorf("read broker metadata %s: %w", p.path, err)
		}
		if p.meta.ClusterID == "" || p.meta.ProducerIDBlockEnd < 0 {
			return nil, fmt.Errorf("read broker metadata %s: missing cluster id or negative producer id", p.path)
		}
	}
	p.next = p.meta.ProducerIDBlockEnd
	return p, nil
}

func (p *producerIDs) clusterID() string { return p.meta.ClusterID }

// allocate returns a producer id never returned before.
func (p *producerIDs) allocate() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next >= p.meta.ProducerIDBlockEnd {
		old := p.meta.ProducerIDBlockEnd
		p.meta.ProducerIDBlockEnd = p.next + producerIDBlock
		if err := p.save(); err != nil {
			p.meta.ProducerIDBlockEnd = old
			return 0, fmt.Errorf("allocate producer id: %w", err)
		}
	}
	id := p.next
	p.next++
	return id, nil
}

// save writes the meta file atomically and durably: a temporary file,
// fsynced, renamed over the old one, and the directory fsynced.
func (p *producerIDs) save() error {
	b, err := json.Marshal(p.meta)
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write broker metadata: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write broker metadata: %w", werr)
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("write broker metadata: %w", err)
	}
	d, err := os.Open(filepath.Dir(p.path))
	if err != nil {
		return fmt.Errorf("write broker metadata: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write broker metadata: sync directory: %w", err)
	}
	return nil
}
