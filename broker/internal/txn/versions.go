package txn

import "github.com/twmb/franz-go/pkg/kmsg"

// MaxVersion reports the highest version of the API with the given key that the Coordinator
// implements, and false if the Coordinator does not handle that API. The wire server
// advertises these in ApiVersions (with Produce v12+ and TxnOffsetCommit v5+ only if it wires
// CheckProduce's implicitAdd and AddTxnOffsetCommit, and the transaction.version feature 2 for
// KIP-890 part 2).
func MaxVersion(key int16) (int16, bool) {
	switch kmsg.Key(key) {
	case kmsg.InitProducerID:
		return 5, true
	case kmsg.AddPartitionsToTxn:
		return 5, true
	case kmsg.AddOffsetsToTxn:
		return 4, true
	case kmsg.EndTxn:
		return 5, true
	case kmsg.DescribeTransactions:
		return 0, true
	case kmsg.ListTransactions:
		return 2, true
	}
	return 0, false
}
