package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Durability is the flush policy: when an appended batch is made durable.
type Durability int

const (
	// DurabilityInterval group-commits: a background flusher fdatasyncs every
	// partition with pending writes every FlushInterval, and moves their high
	// watermarks. Appends return once written; WaitDurable waits for the
	// flush that covers them. This is the default.
	//
	// The cadence holds while someone waits for durability (WaitDurable: a
	// produce with acks, an offset commit) or for the high watermark to move
	// (Changed: a fetch long poll). Writes nobody waits for (acks=0
	// produces) are flushed lazily, within a second or every 256 MiB, so
	// that a stream of them is not slowed by syncs no one asked for.
	DurabilityInterval Durability = iota
	// DurabilityAlways fdatasyncs before Append returns. Concurrent appends to
	// one partition share a sync.
	DurabilityAlways
)

func (d Durability) String() string {
	if d == DurabilityAlways {
		return "always"
	}
	return "interval"
}

// ParseDurability reads "interval" or "always".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "interval", "":
		return DurabilityInterval, nil
	case "always":
		return DurabilityAlways, nil
	}
	return 0, fmt.Errorf("durability %q: want \"interval\" or \"always\"", s)
}

// Options configure a Log. The zero value is ready to use.
type Options struct {
	// Durability is the flush policy. Default DurabilityInterval.
	Durability Durability
	// FlushInterval is the group-commit period under DurabilityInterval.
	// Default 5ms.
	FlushInterval time.Duration
	// LazyFlushInterval bounds how long writes nobody waits for stay
	// unsynced under DurabilityInterval (256 MiB of them are synced
	// sooner). Default 1s.
	LazyFlushInterval time.Duration
	// CleanerInterval is how often retention and compaction are checked.
	// Default 15s.
	CleanerInterval time.Duration
	// IndexIntervalBytes is how many bytes of batches pass between two
	// offset index entries. Default 4096.
	IndexIntervalBytes int
	// Logger receives recovery, retention and compaction events. Default:
	// discard.
	Logger *slog.Logger
	// Now is the clock for segment age, retention, tombstone expiry and
	// LogAppendTime. Default time.Now.
	Now func() time.Time
	// MaxPartitionsPerTopic bounds a topic's partition count, at creation
	// and when partitions are added. Default 10,000: each partition costs
	// a directory, memory and, while it is written or read, an open file,
	// and Kafka advises well under that many per broker.
	MaxPartitionsPerTopic int
	// MaxPartitions bounds the partitions of all topics together. Default
	// 100,000.
	MaxPartitions int
	// MaxOpenFiles bounds the segment files kept open: they are opened
	// when used and the least recently used closed past the bound.
	// Files in use and files with writes not yet synced stay open, so the
	// bound is exceeded only by the activity of the moment. Default
	// DefaultMaxOpenFiles (1024).
	MaxOpenFiles int

	// fs is the filesystem the log lives on. Default vfs.OS; tests set a
	// vfs.MemFS to cut the power under the log.
	fs vfs.FS
}

// Defaults of Options.MaxPartitionsPerTopic and Options.MaxPartitions.
const (
	DefaultMaxPartitionsPerTopic = 10_000
	DefaultMaxPartitions         = 100_000
)

// Errors returned by the log. They are wrapped with context; test with
// errors.Is.
var (
	ErrClosed            = errors.New("log closed")
	ErrUnknownTopic      = errors.New("unknown topic or partition")
	ErrTopicExists       = errors.New("topic already exists")
	ErrInvalidTopicName  = errors.New("invalid topic name")
	ErrInvalidPartitions = errors.New("invalid partition count")
	ErrOffsetOutOfRange  = errors.New("offset out of range")
	ErrMessageTooLarge   = errors.New("record batch too large")
	// ErrStorage is wrapped by every operation on a partition that a disk
	// error took offline (Partition.Offline); the wire server answers
	// KAFKA_STORAGE_ERROR.
	ErrStorage = errors.New("storage error")
)

// Log is a set of topics stored under one directory:
//
//	<dir>/topics/<topic>/topic.json        name, id, partition count, config overrides
//	<dir>/topics/<topic>/<partition>/      segments, indexes (.index, .timeindex, .txnindex), producer-state, log-start-offset, cleaner-offset
//	<dir>/deleting/                        topics being created or deleted (see CreateTopic, DeleteTopic)
//	<dir>/clean-shutdown                   present only between a clean Close and the next Open
//
// A topic's directory is named after the topic, or for a name longer than
// 200 characters after its hash (topicDirName); topic.json has the name.
//
// A Log is safe for concurrent use.
type Log struct {
	dir           string
	opts          Options
	fs            vfs.FS
	logger        *slog.Logger
	indexInterval int64
	files         *fileCache

	mu     sync.RWMutex
	topics map[string]*Topic
	closed bool

	// partitions counts the partitions of every topic, and those being
	// created, against Options.MaxPartitions.
	partMu     sync.Mutex
	partitions int

	dirtyMu  sync.Mutex
	dirty    map[*Partition]struct{}
	dirtySig chan struct{}
	// urgent is set when someone waits for a flush, and cleared as a flush
	// starts; urgentSig wakes a flusher that is letting writes collect.
	// dirtyBytes counts the bytes appended since the last flush.
	urgent     atomic.Bool
	urgentSig  chan struct{}
	dirtyBytes atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

const cleanShutdownFile = "clean-shutdown"

// Open opens (or creates) the log in dir. After an unclean stop it
// recovers each partition's tail; see openPartition.
func Open(dir string, opts Options) (*Log, error) {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 5 * time.Millisecond
	}
	if opts.LazyFlushInterval <= 0 {
		opts.LazyFlushInterval = time.Second
	}
	if opts.CleanerInterval <= 0 {
		opts.CleanerInterval = 15 * time.Second
	}
	if opts.IndexIntervalBytes <= 0 {
		opts.IndexIntervalBytes = 4096
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPartitionsPerTopic <= 0 {
		opts.MaxPartitionsPerTopic = DefaultMaxPartitionsPerTopic
	}
	if opts.MaxPartitions <= 0 {
		opts.MaxPartitions = DefaultMaxPartitions
	}
	if opts.MaxOpenFiles <= 0 {
		opts.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if opts.fs == nil {
		opts.fs = vfs.OS{}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		dir: dir, opts: opts, fs: opts.fs, logger: logger, indexInterval: int64(opts.IndexIntervalBytes),
		files:  newFileCache(opts.fs, opts.MaxOpenFiles),
		topics: map[string]*Topic{}, dirty: map[*Partition]struct{}{},
		dirtySig: make(chan struct{}, 1), urgentSig: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	_, err := l.fs.Stat(l.topicsDir())
	fresh := errors.Is(err, os.ErrNotExist)
	// Finish deletions a crash interrupted, and discard creations. What
	// cannot be removed stays: it is no topic, and must not keep the log
	// from opening.
	if err := l.fs.RemoveAll(l.deletingDir()); err != nil {
		logger.Warn("could not clear deleted topics; they stay on disk", "dir", l.deletingDir(), "err", err)
	}
	for _, d := range []string{l.topicsDir(), l.deletingDir()} {
		// Synced into their parents: a topic is durable only once the
		// directory holding it is.
		if err := vfs.MkdirAllSync(l.fs, d, 0o755); err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
	}
	marker := filepath.Join(dir, cleanShutdownFile)
	_, err = l.fs.Stat(marker)
	clean := err == nil
	if clean {
		// From here on a crash is unclean again.
		if err := l.fs.Remove(marker); err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		if err := l.fs.SyncDir(dir); err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
	} else if !fresh {
		logger.Info("log was not closed cleanly; recovering partition tails", "dir", dir)
	}
	entries, err := l.fs.ReadDir(l.topicsDir())
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := l.fs.Stat(filepath.Join(l.topicsDir(), e.Name(), topicMetaFile)); errors.Is(err, os.ErrNotExist) {
			// Topics are renamed into place with their topic.json, so this
			// is none of ours (or a version's that deleted in place): keep
			// it for a human, and start.
			logger.Warn("ignoring a directory without "+topicMetaFile+" among the topics", "dir", filepath.Join(l.topicsDir(), e.Name()))
			continue
		}
		t, err := openTopic(l, e.Name(), clean)
		if err != nil {
			l.closeTopics(false)
			return nil, fmt.Errorf("open log: %w", err)
		}
		l.topics[t.name] = t
		l.partitions += len(t.parts)
	}
	l.wg.Add(2)
	go l.flusher()
	go l.cleaner()
	return l, nil
}

func (l *Log) topicsDir() string   { return filepath.Join(l.dir, "topics") }
func (l *Log) deletingDir() string { return filepath.Join(l.dir, "deleting") }
func (l *Log) now() time.Time      { return l.opts.Now() }

// OfflinePartitions returns how many partitions a disk error took offline
// (Partition.Offline), for metrics.
func (l *Log) OfflinePartitions() int {
	n := 0
	for _, t := range l.Topics() {
		for _, p := range t.Partitions() {
			if p.Offline() {
				n++
			}
		}
	}
	return n
}

// Dir returns the directory the log lives in.
func (l *Log) Dir() string { return l.dir }

// Close stops the background work, makes everything durable and closes
// every file. A log closed this way reopens without recovery scans; if a
// partition is offline (or closing one fails), Close returns the error
// and the next open recovers every partition as after a crash.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()
	if err := l.closeTopics(true); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	if err := vfs.WriteFileAtomic(l.fs, filepath.Join(l.dir, cleanShutdownFile), nil); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	return nil
}

func (l *Log) closeTopics(clean bool) error {
	var errs []error
	for _, t := range l.topics {
		for _, p := range t.Partitions() {
			errs = append(errs, p.close(clean))
		}
	}
	return errors.Join(errs...)
}

// Topic is a named set of partitions with one configuration.
type Topic struct {
	log  *Log
	name string
	id   [16]byte
	dir  string

	mu        sync.RWMutex
	parts     []*Partition
	overrides map[string]string
	cfg       atomic.Pointer[TopicConfig]
}

// topicMeta is topic.json.
type topicMeta struct {
	Name       string            `json:"name"`
	ID         string            `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

const topicMetaFile = "topic.json"

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }

// ID returns the topic's id (Kafka's topic UUID).
func (t *Topic) ID() [16]byte { return t.id }

// Config returns the effective configuration.
func (t *Topic) Config() TopicConfig { return *t.cfg.Load() }

// Overrides returns the settings given for this topic, by Kafka name.
func (t *Topic) Overrides() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return maps.Clone(t.overrides)
}

// NumPartitions returns the partition count.
func (t *Topic) NumPartitions() int32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int32(len(t.parts))
}

// Partitions returns the partitions in order.
func (t *Topic) Partitions() []*Partition {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.parts)
}

// Partition returns partition i, or nil if there is none.
func (t *Topic) Partition(i int32) *Partition {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i < 0 || int(i) >= len(t.parts) {
		return nil
	}
	return t.parts[i]
}

func (t *Topic) writeMeta() error {
	meta := topicMeta{Name: t.name, ID: hex.EncodeToString(t.id[:]), Partitions: int32(len(t.parts)), Configs: t.overrides}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(t.log.fs, filepath.Join(t.dir, topicMetaFile), b); err != nil {
		return fmt.Errorf("write %s metadata: %w", t.name, err)
	}
	return t.log.fs.SyncDir(t.dir)
}

func openTopic(l *Log, dirName string, clean bool) (*Topic, error) {
	dir := filepath.Join(l.topicsDir(), dirName)
	b, err := vfs.ReadFile(l.fs, filepath.Join(dir, topicMetaFile))
	if err != nil {
		return nil, fmt.Errorf("open topic %s: %w", dirName, err)
	}
	var meta topicMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("open topic %s: %s: %w", dirName, topicMetaFile, err)
	}
	cfg, err := ParseTopicConfig(meta.Configs)
	if err != nil {
		return nil, fmt.Errorf("open topic %s: %w", dirName, err)
	}
	t := &Topic{log: l, name: meta.Name, dir: dir, overrides: meta.Configs}
	// A long name may be in its own directory still, as releases before
	// hashing created it.
	if meta.Name != dirName && topicDirName(meta.Name) != dirName {
		return nil, fmt.Errorf("open topic %s: %s names topic %q", dirName, topicMetaFile, meta.Name)
	}
	if _, err := hex.Decode(t.id[:], []byte(meta.ID)); err != nil {
		return nil, fmt.Errorf("open topic %s: bad id %q: %w", dirName, meta.ID, err)
	}
	t.cfg.Store(&cfg)
	for i := range meta.Partitions {
		p, err := openPartition(l, t, i, clean)
		if err != nil {
			for _, p := range t.parts {
				p.close(false)
			}
			return nil, fmt.Errorf("open topic %s: %w", dirName, err)
		}
		t.parts = append(t.parts, p)
	}
	return t, nil
}

var topicNameRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// maxPlainDirName is the longest topic name used as its directory's name
// as it is. Kafka allows 249 characters, and many filesystems 255 bytes
// in a name, which leaves little room for anything built from it; a longer
// name is hashed.
const maxPlainDirName = 200

// topicDirName is the name of a topic's directory: the topic's name, or
// for a long one its first 100 characters, "+" and the SHA-256 of the
// whole name in hex (165 characters). "+" is never in a topic name, so a
// hashed name cannot be another topic's plain one.
func topicDirName(name string) string {
	if len(name) <= maxPlainDirName {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:100] + "+" + hex.EncodeToString(sum[:])
}

// ValidateTopicName applies Kafka's rules for topic names.
func ValidateTopicName(name string) error {
	if !topicNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w: %q: use 1 to 249 of [a-zA-Z0-9._-], not \".\" or \"..\"", ErrInvalidTopicName, name)
	}
	return nil
}

// CreateTopic creates a topic with the given partition count and config
// overrides (Kafka names).
func (l *Log) CreateTopic(name string, partitions int32, overrides map[string]string) (*Topic, error) {
	if err := ValidateTopicName(name); err != nil {
		return nil, fmt.Errorf("create topic: %w", err)
	}
	if partitions < 1 {
		return nil, fmt.Errorf("create topic %s: %w: %d", name, ErrInvalidPartitions, partitions)
	}
	if err := l.checkPerTopic(int64(partitions)); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	cfg, err := ParseTopicConfig(overrides)
	if err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("create topic %s: %w", name, ErrClosed)
	}
	if _, ok := l.topics[name]; ok {
		return nil, fmt.Errorf("create topic %s: %w", name, ErrTopicExists)
	}
	if err := l.reservePartitions(int(partitions)); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	created := false
	defer func() {
		if !created {
			l.releasePartitions(int(partitions))
		}
	}()
	t := &Topic{log: l, name: name, overrides: maps.Clone(overrides)}
	t.id = uuid.New()
	t.cfg.Store(&cfg)
	// The metadata goes in a fresh directory that is renamed into place, so
	// a crash never leaves a topic directory without its topic.json; one
	// left in deleting/ is removed by the next Open.
	tmp := filepath.Join(l.deletingDir(), uuid.NewString()+".creating")
	if err := l.fs.Mkdir(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	t.dir = tmp
	t.parts = make([]*Partition, partitions)
	if err := t.writeMeta(); err != nil {
		l.fs.RemoveAll(tmp)
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	t.parts = nil
	dir := filepath.Join(l.topicsDir(), topicDirName(name))
	if err := l.fs.Rename(tmp, dir); err != nil {
		l.fs.RemoveAll(tmp)
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	t.dir = dir
	err = l.fs.SyncDir(l.topicsDir())
	for i := int32(0); err == nil && i < partitions; i++ {
		var p *Partition
		if p, err = openPartition(l, t, i, true); err == nil {
			t.parts = append(t.parts, p)
		}
	}
	if err != nil {
		// Half a topic (out of descriptors, say) is taken back whole, so
		// that neither this log nor the next Open finds it.
		for _, p := range t.parts {
			p.close(false)
		}
		if rerr := l.removeTopicDir(t); rerr != nil {
			l.logger.Error("could not remove a topic whose creation failed", "topic", name, "dir", t.dir, "err", rerr)
		}
		return nil, fmt.Errorf("create topic %s: %w", name, err)
	}
	l.topics[name] = t
	created = true
	return t, nil
}

// checkPerTopic checks a topic's partition count against
// Options.MaxPartitionsPerTopic.
func (l *Log) checkPerTopic(n int64) error {
	if n > int64(l.opts.MaxPartitionsPerTopic) {
		return fmt.Errorf("%w: %d partitions exceed the limit of %d per topic", ErrInvalidPartitions, n, l.opts.MaxPartitionsPerTopic)
	}
	return nil
}

// reservePartitions counts n new partitions against Options.MaxPartitions,
// before anything of them is written; releasePartitions gives them back
// when they are not created after all, or deleted.
func (l *Log) reservePartitions(n int) error {
	l.partMu.Lock()
	defer l.partMu.Unlock()
	if l.partitions+n > l.opts.MaxPartitions {
		return fmt.Errorf("%w: %d more partitions would make %d, over the limit of %d in the log", ErrInvalidPartitions, n, l.partitions+n, l.opts.MaxPartitions)
	}
	l.partitions += n
	return nil
}

func (l *Log) releasePartitions(n int) {
	l.partMu.Lock()
	l.partitions -= n
	l.partMu.Unlock()
}

// Topic returns the named topic, or nil.
func (l *Log) Topic(name string) *Topic {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.topics[name]
}

// Topics returns every topic, sorted by name.
func (l *Log) Topics() []*Topic {
	l.mu.RLock()
	defer l.mu.RUnlock()
	ts := slices.Collect(maps.Values(l.topics))
	slices.SortFunc(ts, func(a, b *Topic) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return ts
}

// Partition returns a topic's partition, or an error wrapping
// ErrUnknownTopic.
func (l *Log) Partition(topic string, partition int32) (*Partition, error) {
	t := l.Topic(topic)
	if t == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	p := t.Partition(partition)
	if p == nil {
		return nil, fmt.Errorf("%w: %s-%d", ErrUnknownTopic, topic, partition)
	}
	return p, nil
}

// DeleteTopic removes a topic and its data. Readers and writers of its
// partitions get ErrClosed.
//
// The delete is atomic across a crash: the topic's directory is renamed
// into deleting/ (under a short name of its own, whatever the topic's
// length) and that is made durable before DeleteTopic returns; the files
// are removed after, and what a crash leaves of them is removed by the
// next Open. So a crash leaves the topic whole or gone, and once
// DeleteTopic returned, gone.
func (l *Log) DeleteTopic(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.topics[name]
	if !ok {
		return fmt.Errorf("delete topic: %w: %s", ErrUnknownTopic, name)
	}
	for _, p := range t.Partitions() {
		p.close(false)
	}
	gone := filepath.Join(l.deletingDir(), uuid.NewString())
	if err := l.fs.Rename(t.dir, gone); err != nil {
		// Still whole on disk: open it again, as after a crash, rather
		// than leave a topic that is gone until the next restart.
		if t2, oerr := openTopic(l, filepath.Base(t.dir), false); oerr == nil {
			l.topics[name] = t2
		} else {
			delete(l.topics, name)
			l.releasePartitions(int(t.NumPartitions()))
			l.logger.Error("a topic whose delete failed could not be reopened", "topic", name, "err", oerr)
		}
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	delete(l.topics, name)
	l.releasePartitions(int(t.NumPartitions()))
	if err := l.fs.SyncDir(l.topicsDir()); err != nil {
		// Gone for now, but a power cut may bring it back.
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	if err := l.fs.RemoveAll(gone); err != nil {
		// The topic is gone; its files go at the next Open.
		l.logger.Warn("could not remove a deleted topic's files", "topic", name, "dir", gone, "err", err)
	}
	return nil
}

// removeTopicDir deletes a topic's directory as DeleteTopic does: renamed
// into deleting/, durably, then removed.
func (l *Log) removeTopicDir(t *Topic) error {
	gone := filepath.Join(l.deletingDir(), uuid.NewString())
	if err := l.fs.Rename(t.dir, gone); err != nil {
		return err
	}
	if err := l.fs.SyncDir(l.topicsDir()); err != nil {
		return err
	}
	return l.fs.RemoveAll(gone)
}

// CreatePartitions raises a topic's partition count to total.
func (l *Log) CreatePartitions(name string, total int32) error {
	t := l.Topic(name)
	if t == nil {
		return fmt.Errorf("create partitions: %w: %s", ErrUnknownTopic, name)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	have := int32(len(t.parts))
	if total <= have {
		return fmt.Errorf("create partitions of %s: %w: topic has %d, asked for %d; the count can only grow", name, ErrInvalidPartitions, have, total)
	}
	if err := l.checkPerTopic(int64(total)); err != nil {
		return fmt.Errorf("create partitions of %s: %w", name, err)
	}
	if err := l.reservePartitions(int(total - have)); err != nil {
		return fmt.Errorf("create partitions of %s: %w", name, err)
	}
	added := []*Partition{}
	defer func() {
		if len(t.parts) == int(have) {
			l.releasePartitions(int(total - have))
		}
	}()
	for i := have; i < total; i++ {
		p, err := openPartition(l, t, i, true)
		if err != nil {
			for _, p := range added {
				p.close(false)
			}
			return fmt.Errorf("create partitions of %s: %w", name, err)
		}
		added = append(added, p)
	}
	t.parts = append(t.parts, added...)
	if err := t.writeMeta(); err != nil {
		t.parts = t.parts[:have]
		for _, p := range added {
			p.close(false)
		}
		return fmt.Errorf("create partitions of %s: %w", name, err)
	}
	return nil
}

// SetTopicConfig replaces a topic's config overrides (Kafka names); what is
// not named returns to its default.
func (l *Log) SetTopicConfig(name string, overrides map[string]string) error {
	t := l.Topic(name)
	if t == nil {
		return fmt.Errorf("set config: %w: %s", ErrUnknownTopic, name)
	}
	cfg, err := ParseTopicConfig(overrides)
	if err != nil {
		return fmt.Errorf("set config of %s: %w", name, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.overrides
	t.overrides = maps.Clone(overrides)
	if err := t.writeMeta(); err != nil {
		t.overrides = old
		return fmt.Errorf("set config of %s: %w", name, err)
	}
	t.cfg.Store(&cfg)
	return nil
}

// markDirty queues a partition, n bytes of which were just written, for
// the next group commit.
func (l *Log) markDirty(p *Partition, n int64) {
	l.dirtyMu.Lock()
	l.dirty[p] = struct{}{}
	l.dirtyMu.Unlock()
	select {
	case l.dirtySig <- struct{}{}:
	default:
	}
	if l.dirtyBytes.Add(n) >= lazyFlushBytes {
		l.hurry()
	}
}

// hurry asks for the next group commit at the usual cadence: someone waits
// for it.
func (l *Log) hurry() {
	if !l.urgent.Swap(true) {
		select {
		case l.urgentSig <- struct{}{}:
		default:
		}
	}
}

// lazyFlushBytes bounds how many bytes nobody waits for stay unsynced.
const lazyFlushBytes = 256 << 20

// flusher is the group commit: it waits for writes, lets FlushInterval pass
// since the previous flush ended so that more writes join, then syncs every
// partition written since. Counting from the end, not the start, keeps a
// gap between fdatasyncs even when one is slow, so appends are not blocked
// behind writeback back to back. While nobody waits for a flush, writes
// collect for up to LazyFlushInterval or lazyFlushBytes first: each
// fdatasync stalls the appends that touch pages under writeback, and with
// no one waiting there is nothing to gain from it sooner.
func (l *Log) flusher() {
	defer l.wg.Done()
	var last time.Time
	timer := time.NewTimer(0)
	<-timer.C
	wait := func(d time.Duration, wake <-chan struct{}) bool {
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-l.stop:
			return false
		}
		return true
	}
	for {
		select {
		case <-l.dirtySig:
		case <-l.stop:
			l.flushDirty()
			return
		}
		if !l.urgent.Load() && !wait(l.opts.LazyFlushInterval-time.Since(last), l.urgentSig) {
			l.flushDirty()
			return
		}
		if !wait(l.opts.FlushInterval-time.Since(last), nil) {
			l.flushDirty()
			return
		}
		// Cleared before the flush takes its snapshot: whoever starts
		// waiting from here on is covered by this flush or sets it again.
		l.urgent.Store(false)
		l.flushDirty()
		last = time.Now()
	}
}

func (l *Log) flushDirty() {
	l.dirtyBytes.Store(0)
	l.dirtyMu.Lock()
	dirty := l.dirty
	l.dirty = make(map[*Partition]struct{}, len(dirty))
	l.dirtyMu.Unlock()
	const parallel = 4 // fsyncs in flight; more rarely helps one disk
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for p := range dirty {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.mu.RLock()
			leo := p.leo
			p.mu.RUnlock()
			// A failure took the partition offline and logged it: the high
			// watermark stays put, so nothing unsynced is served or
			// acknowledged, and the sync is not retried (failLocked).
			p.syncTo(leo)
		})
	}
	wg.Wait()
}

// cleaner applies retention and compaction every CleanerInterval.
func (l *Log) cleaner() {
	defer l.wg.Done()
	tick := time.NewTicker(l.opts.CleanerInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-l.stop:
				case <-ctx.Done():
				}
				cancel()
			}()
			l.clean(ctx)
			cancel()
		case <-l.stop:
			return
		}
	}
}

// clean runs one round of retention and compaction over every partition.
func (l *Log) clean(ctx context.Context) {
	for _, t := range l.Topics() {
		for _, p := range t.Partitions() {
			if ctx.Err() != nil {
				return
			}
			if p.Offline() {
				continue
			}
			if err := p.clean(ctx); err != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
				l.logger.Error("cleaning failed", "partition", p.String(), "err", err)
			}
		}
	}
}
