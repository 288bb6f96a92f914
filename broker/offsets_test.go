package broker

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestOffsetForLeaderEpoch asks where epochs end: epoch 0, the only one,
// ends at the log end offset; later epochs are unknown; a current leader
// epoch newer than ours is refused.
func TestOffsetForLeaderEpoch(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "epochs", 1)
	raw := dialRaw(t, b)
	for range 3 {
		if resp := raw.roundTrip(produceRequest("epochs", 0, -1, mustBatch(t, []byte("e")))).(*kmsg.ProduceResponse); resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatal(kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
		}
	}
	ask := func(topic string, current, epoch int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.SetVersion(4)
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = current, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return raw.roundTrip(req).(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0]
	}
	if p := ask("epochs", 0, 0); p.ErrorCode != 0 || p.LeaderEpoch != 0 || p.EndOffset != 3 {
		t.Errorf("epoch 0: %+v, want it to end at offset 3", p)
	}
	if p := ask("epochs", -1, 1); p.ErrorCode != 0 || p.LeaderEpoch != -1 || p.EndOffset != -1 {
		t.Errorf("epoch 1: %+v, want undefined (-1, -1)", p)
	}
	if p := ask("epochs", 5, 0); p.ErrorCode != kerr.UnknownLeaderEpoch.Code {
		t.Errorf("current leader epoch 5: %v, want UNKNOWN_LEADER_EPOCH", kerr.ErrorForCode(p.ErrorCode))
	}
	if p := ask("nope", -1, 0); p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("unknown topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", kerr.ErrorForCode(p.ErrorCode))
	}
}
