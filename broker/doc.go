// Package broker is the bundled log's Kafka wire protocol server: it accepts
// connections from any Kafka client, decodes requests with franz-go's kmsg,
// answers them from the storage engine in broker/storage (one node that
// leads every partition at leader epoch 0 and coordinates every group and
// transactional id) and encodes the responses, in order, per connection.
// [Start] runs a broker in-process, which is how `runnel serve` and the
// framework's embedded log use it. Every API a broker answers has one entry
// in the dispatch table (apiTable in apis.go, groupAPIs in groups.go), which
// ApiVersions advertises with exactly the versions implemented. For
// monitoring, Config.Metrics registers Prometheus metrics and
// [Broker.Status] snapshots the topics and consumer groups.
package broker
