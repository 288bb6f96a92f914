package broker

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// configInfo describes a topic config for DescribeConfigs: its type, the
// broker-wide config Kafka names as its default (its synonym), and a line of
// documentation.
type configInfo struct {
	typ    kmsg.ConfigType
	broker string
	doc    string
}

// topicConfigInfo covers storage.ConfigNames(); a config missing here is
// described as a string with no synonym.
var topicConfigInfo = map[string]configInfo{
	storage.ConfigCleanupPolicy:          {kmsg.ConfigTypeList, "log.cleanup.policy", `"delete" removes old segments by time or size; "compact" keeps the latest record per key; or both.`},
	storage.ConfigRetentionMs:            {kmsg.ConfigTypeLong, "log.retention.ms", "How long a closed segment is kept after its newest record, in ms; -1 keeps it forever."},
	storage.ConfigRetentionBytes:         {kmsg.ConfigTypeLong, "log.retention.bytes", "The size a partition is trimmed to by deleting its oldest segments; -1 is unbounded."},
	storage.ConfigSegmentBytes:           {kmsg.ConfigTypeInt, "log.segment.bytes", "The size at which a partition's active segment is rolled."},
	storage.ConfigSegmentMs:              {kmsg.ConfigTypeLong, "log.roll.ms", "The age at which a non-empty active segment is rolled, in ms."},
	storage.ConfigDeleteRetentionMs:      {kmsg.ConfigTypeLong, "log.cleaner.delete.retention.ms", "How long compaction keeps tombstones, in ms."},
	storage.ConfigMinCleanableDirtyRatio: {kmsg.ConfigTypeDouble, "log.cleaner.min.cleanable.ratio", "The share of uncompacted bytes in closed segments above which compaction runs."},
	storage.ConfigMaxMessageBytes:        {kmsg.ConfigTypeInt, "message.max.bytes", "The largest record batch accepted, in bytes."},
	storage.ConfigMessageTimestampType:   {kmsg.ConfigTypeString, "log.message.timestamp.type", `"CreateTime" keeps producers' timestamps; "LogAppendTime" stamps batches with the broker's time.`},
}

// describeTopicConfigs describes every topic config (or those in names, if
// not nil): value, source (TOPIC_CONFIG for overrides, DEFAULT_CONFIG
// otherwise), and with synonyms the override and the broker default in
// precedence order.
func describeTopicConfigs(cfg storage.TopicConfig, overrides map[string]string, names []string, synonyms, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	values := cfg.Map()
	defaults := storage.DefaultTopicConfig().Map()
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if names != nil && !slices.Contains(names, name) {
			continue
		}
		info, ok := topicConfigInfo[name]
		if !ok {
			info.typ = kmsg.ConfigTypeString
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ConfigType = name, strp(values[name]), info.typ
		_, overridden := overrides[name]
		c.Source, c.IsDefault = kmsg.ConfigSourceDefaultConfig, true
		if overridden {
			c.Source, c.IsDefault = kmsg.ConfigSourceDynamicTopicConfig, false
		}
		if synonyms {
			if overridden {
				s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				s.Name, s.Value, s.Source = name, strp(values[name]), kmsg.ConfigSourceDynamicTopicConfig
				c.ConfigSynonyms = append(c.ConfigSynonyms, s)
			}
			if info.broker != "" {
				s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
				s.Name, s.Value, s.Source = info.broker, strp(defaults[name]), kmsg.ConfigSourceDefaultConfig
				c.ConfigSynonyms = append(c.ConfigSynonyms, s)
			}
		}
		if docs && info.doc != "" {
			c.Documentation = strp(info.doc)
		}
		out = append(out, c)
	}
	return out
}

// brokerConfigs describes the broker: a minimal set of Kafka's broker
// configs, with the values this broker runs with. None can be altered.
func (b *Broker) brokerConfigs(names []string, docs bool) []kmsg.DescribeConfigsResponseResourceConfig {
	type entry struct {
		name, value string
		typ         kmsg.ConfigType
		set         bool // given by the operator rather than defaulted
		doc         string
	}
	listener := "PLAINTEXT://" + b.Addr()
	entries := []entry{
		{"node.id", strconv.Itoa(int(b.cfg.NodeID)), kmsg.ConfigTypeInt, b.cfg.NodeID != 0, "This broker's node id."},
		{"broker.id", strconv.Itoa(int(b.cfg.NodeID)), kmsg.ConfigTypeInt, b.cfg.NodeID != 0, "This broker's node id."},
		{"listeners", listener, kmsg.ConfigTypeList, true, "The address the broker listens on."},
		{"advertised.listeners", "PLAINTEXT://" + b.advHost + ":" + strconv.Itoa(int(b.advPort)), kmsg.ConfigTypeList, b.cfg.AdvertisedAddr != "", "The address clients are told to connect to."},
		{"log.dirs", b.cfg.Dir, kmsg.ConfigTypeList, true, "The data directory."},
		{"auto.create.topics.enable", strconv.FormatBool(!b.cfg.DisableAutoCreate), kmsg.ConfigTypeBoolean, b.cfg.DisableAutoCreate, "Whether Metadata requests create the unknown topics they name."},
		{"num.partitions", strconv.Itoa(int(b.cfg.DefaultPartitions)), kmsg.ConfigTypeInt, b.cfg.DefaultPartitions != DefaultPartitions, "The partition count of topics created without one."},
		{"default.replication.factor", "1", kmsg.ConfigTypeInt, false, "Always 1: runnel is one node."},
		{"offsets.topic.replication.factor", "1", kmsg.ConfigTypeShort, false, "Always 1: runnel is one node."},
		{"min.insync.replicas", "1", kmsg.ConfigTypeInt, false, "Always 1: runnel is one node."},
		{"socket.request.max.bytes", strconv.Itoa(int(b.cfg.MaxRequestSize)), kmsg.ConfigTypeInt, b.cfg.MaxRequestSize != DefaultMaxRequestSize, "The largest request accepted, in bytes."},
	}
	for name, v := range storage.DefaultTopicConfig().Map() {
		if info, ok := topicConfigInfo[name]; ok {
			entries = append(entries, entry{info.broker, v, info.typ, false, "Default of the topic config " + name + "."})
		}
	}
	slices.SortFunc(entries, func(x, y entry) int { return strings.Compare(x.name, y.name) })
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, e := range entries {
		if names != nil && !slices.Contains(names, e.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ConfigType, c.ReadOnly = e.name, strp(e.value), e.typ, true
		c.Source, c.IsDefault = kmsg.ConfigSourceDefaultConfig, true
		if e.set {
			c.Source, c.IsDefault = kmsg.ConfigSourceStaticBrokerConfig, false
		}
		if docs {
			c.Documentation = strp(e.doc)
		}
		out = append(out, c)
	}
	return out
}

// isThisBroker reports whether a broker resource name means this broker:
// its node id, or "" for the cluster-wide default.
func (b *Broker) isThisBroker(name string) bool {
	return name == "" || name == strconv.Itoa(int(b.cfg.NodeID))
}

// handleDescribeConfigs describes topic and broker configs.
func (b *Broker) handleDescribeConfigs(ctx context.Context, req *kmsg.DescribeConfigsRequest) *kmsg.DescribeConfigsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	z, _ := b.authzFor(ctx, kmsg.DescribeConfigs)
	docs := req.Version >= 3 && req.IncludeDocumentation
	synonyms := req.Version >= 1 && req.IncludeSynonyms
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if denied := z.deniedConfig(rr.ResourceType, rr.ResourceName); denied != 0 {
			sr.ErrorCode, sr.ErrorMessage = denied, strp("not authorized")
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			t := b.log.Topic(rr.ResourceName)
			if t == nil {
				sr.ErrorCode, sr.ErrorMessage = kerr.UnknownTopicOrPartition.Code, strp("topic "+strconv.Quote(rr.ResourceName)+" does not exist")
				break
			}
			sr.Configs = describeTopicConfigs(t.Config(), t.Overrides(), rr.ConfigNames, synonyms, docs)
		case kmsg.ConfigResourceTypeBroker:
			if !b.isThisBroker(rr.ResourceName) {
				sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, strp("no broker "+strconv.Quote(rr.ResourceName)+"; this is node "+strconv.Itoa(int(b.cfg.NodeID)))
				break
			}
			sr.Configs = b.brokerConfigs(rr.ConfigNames, docs)
		default:
			sr.ErrorCode, sr.ErrorMessage = kerr.InvalidRequest.Code, strp("resource type "+rr.ResourceType.String()+" has no configs here; topics and brokers do")
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// handleAlterConfigs replaces a topic's config overrides with the ones
// given (the legacy, non-incremental API).
func (b *Broker) handleAlterConfigs(ctx context.Context, req *kmsg.AlterConfigsRequest) *kmsg.AlterConfigsResponse {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	z, _ := b.authzFor(ctx, kmsg.AlterConfigs)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := b.checkAlterable(rr.ResourceType, rr.ResourceName)
		if denied := z.deniedConfig(rr.ResourceType, rr.ResourceName); denied != 0 {
			err = adminErr(denied, "not authorized to alter the configs of %s %q", rr.ResourceType, rr.ResourceName)
		}
		if err == nil {
			err = b.alterTopicConfig(rr.ResourceName, req.ValidateOnly, func(map[string]string) (map[string]string, error) {
				next := map[string]string{}
				for _, c := range rr.Configs {
					if _, dup := next[c.Name]; dup {
						return nil, adminErr(kerr.InvalidRequest.Code, "config %q is given more than once", c.Name)
					}
					if c.Value == nil {
						return nil, adminErr(kerr.InvalidRequest.Code, "config %q has a null value", c.Name)
					}
					next[c.Name] = *c.Value
				}
				return next, nil
			})
		}
		sr.ErrorCode, sr.ErrorMessage = b.adminCode("alter configs", err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// handleIncrementalAlterConfigs sets, deletes, appends to or subtracts from
// single topic configs.
func (b *Broker) handleIncrementalAlterConfigs(ctx context.Context, req *kmsg.IncrementalAlterConfigsRequest) *kmsg.IncrementalAlterConfigsResponse {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	z, _ := b.authzFor(ctx, kmsg.IncrementalAlterConfigs)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		err := b.checkAlterable(rr.ResourceType, rr.ResourceName)
		if denied := z.deniedConfig(rr.ResourceType, rr.ResourceName); denied != 0 {
			err = adminErr(denied, "not authorized to alter the configs of %s %q", rr.ResourceType, rr.ResourceName)
		}
		if err == nil {
			err = b.alterTopicConfig(rr.ResourceName, req.ValidateOnly, func(cur map[string]string) (map[string]string, error) {
				return applyIncremental(cur, rr.Configs)
			})
		}
		sr.ErrorCode, sr.ErrorMessage = b.adminCode("incremental alter configs", err)
		resp.Resources = append(resp.Resources, sr)
	}
	return resp
}

// checkAlterable accepts topic resources; broker configs are fixed at start.
func (b *Broker) checkAlterable(typ kmsg.ConfigResourceType, name string) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		return nil
	case kmsg.ConfigResourceTypeBroker:
		return adminErr(kerr.InvalidRequest.Code, "broker configs cannot be altered while runnel runs; restart it with other flags")
	}
	return adminErr(kerr.InvalidRequest.Code, "resource type %s has no configs here; topics do", typ)
}

// alterTopicConfig replaces a topic's overrides with what change makes of
// the current ones, after checking the result; validateOnly stops there.
func (b *Broker) alterTopicConfig(topic string, validateOnly bool, change func(map[string]string) (map[string]string, error)) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t := b.log.Topic(topic)
	if t == nil {
		return adminErr(kerr.UnknownTopicOrPartition.Code, "topic %q does not exist", topic)
	}
	next, err := change(t.Overrides())
	if err != nil {
		return err
	}
	if _, err := storage.ParseTopicConfig(next); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	if err := b.log.SetTopicConfig(topic, next); err != nil {
		return err
	}
	b.logger.Info("altered topic config", "topic", topic, "configs", next)
	return nil
}

// applyIncremental applies IncrementalAlterConfigs operations to a copy of
// the overrides cur. APPEND and SUBTRACT work on list configs only; they
// start from the current value, the default if there is no override, as
// Kafka does.
func applyIncremental(cur map[string]string, ops []kmsg.IncrementalAlterConfigsRequestResourceConfig) (map[string]string, error) {
	next := maps.Clone(cur)
	if next == nil {
		next = map[string]string{}
	}
	known := storage.ConfigNames()
	defaults := storage.DefaultTopicConfig().Map()
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Name] {
			return nil, adminErr(kerr.InvalidRequest.Code, "config %q is given more than once", op.Name)
		}
		seen[op.Name] = true
		if !slices.Contains(known, op.Name) {
			return nil, adminErr(kerr.InvalidConfig.Code, "unknown topic config %q", op.Name)
		}
		if op.Op != kmsg.IncrementalAlterConfigOpDelete && op.Value == nil {
			return nil, adminErr(kerr.InvalidRequest.Code, "config %q: %s needs a value", op.Name, op.Op)
		}
		switch op.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			next[op.Name] = *op.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(next, op.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if topicConfigInfo[op.Name].typ != kmsg.ConfigTypeList {
				return nil, adminErr(kerr.InvalidConfig.Code, "config %q is not a list; %s applies to lists only", op.Name, op.Op)
			}
			value, ok := next[op.Name]
			if !ok {
				value = defaults[op.Name]
			}
			items := splitList(value)
			for _, v := range splitList(*op.Value) {
				if op.Op == kmsg.IncrementalAlterConfigOpAppend {
					if !slices.Contains(items, v) {
						items = append(items, v)
					}
				} else {
					items = slices.DeleteFunc(items, func(x string) bool { return x == v })
				}
			}
			next[op.Name] = strings.Join(items, ",")
		default:
			return nil, adminErr(kerr.InvalidRequest.Code, "config %q: unknown operation %d", op.Name, op.Op)
		}
	}
	return next, nil
}

// splitList splits a list config's value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
