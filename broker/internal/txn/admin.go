package txn

import (
	"context"
	"regexp"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeTransactions handles a DescribeTransactions request (v0): the state, producer,
// timeout, start time and partitions of each transactional id asked for, or
// TRANSACTIONAL_ID_NOT_FOUND.
func (c *Coordinator) DescribeTransactions(_ context.Context, req *kmsg.DescribeTransactionsRequest) *kmsg.DescribeTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	code := c.admit()
	if code == 0 {
		defer c.exit()
	}
	for _, id := range req.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		st.ProducerID, st.ProducerEpoch, st.StartTimestamp = -1, -1, -1
		switch {
		case code != 0:
			st.ErrorCode = code
		case id == "":
			st.ErrorCode = kerr.InvalidRequest.Code
		default:
			if t := c.lookup(id); t == nil {
				st.ErrorCode = kerr.TransactionalIDNotFound.Code
			} else {
				m := t.m
				t.mu.Unlock()
				st.State = m.state.String()
				st.TimeoutMillis = m.timeoutMs
				st.StartTimestamp = m.start
				st.ProducerID = m.pid
				st.ProducerEpoch = m.epoch
				for _, tp := range m.parts {
					if n := len(st.Topics); n == 0 || st.Topics[n-1].Topic != tp.Topic {
						rt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
						rt.Topic = tp.Topic
						st.Topics = append(st.Topics, rt)
					}
					rt := &st.Topics[len(st.Topics)-1]
					rt.Partitions = append(rt.Partitions, tp.Partition)
				}
			}
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

// ListTransactions handles a ListTransactions request (v0–v2): every transactional id, with its
// producer id and state, that passes the filters: states (names Kafka uses; unknown names are
// echoed in UnknownStateFilters and ignored), producer ids, from v1 a duration (transactions
// started longer ago than it), and from v2 a regular expression on the id.
func (c *Coordinator) ListTransactions(_ context.Context, req *kmsg.ListTransactionsRequest) *kmsg.ListTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	if code := c.admit(); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	defer c.exit()
	var states []kmsg.TransactionState
	for _, name := range req.StateFilters {
		if s, ok := stateByName(name); ok {
			states = append(states, s)
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
		}
	}
	duration := int64(-1)
	if req.Version >= 1 {
		duration = req.DurationFilterMillis
	}
	var pattern *regexp.Regexp
	if req.Version >= 2 && req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		re, err := regexp.Compile(*req.TransactionalIDPattern)
		if err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
		pattern = re
	}
	now := c.nowMs()
	for _, t := range c.snapshot() {
		t.mu.Lock()
		m, removed := t.m, t.removed || t.m.epoch < 0
		t.mu.Unlock()
		switch {
		case removed:
		case len(states) > 0 && !slices.Contains(states, m.state):
		case len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, m.pid):
		case duration >= 0 && now-m.start <= duration:
		case pattern != nil && !pattern.MatchString(t.id):
		default:
			st := kmsg.NewListTransactionsResponseTransactionState()
			st.TransactionalID = t.id
			st.ProducerID = m.pid
			st.TransactionState = m.state.String()
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
	}
	return resp
}

// stateByName maps Kafka's name of a state to the state; names are exact, as in Kafka.
func stateByName(name string) (kmsg.TransactionState, bool) {
	for s := kmsg.TransactionStateEmpty; s <= kmsg.TransactionStatePrepareEpochFence; s++ {
		if s.String() == name {
			return s, true
		}
	}
	return 0, false
}
