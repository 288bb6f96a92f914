package runtime

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/runtime/internal/monitor"
	"github.com/runnel-io/runnel/topology"
)

// The monitor serves, on Options.HTTPAddr:
//
//	GET /                         the monitor page (and its script and style under /assets/)
//	GET /metrics                  the metrics, in Prometheus' text format
//	GET /api/topology             the topology as a graph: topology.Graph as JSON
//	GET /api/groups               the instance, and each group's state and the partitions
//	                              it owns here: instanceJSON and groupJSON below
//	GET /api/tables/{group}?key=K the row of key K of the group's table: tableJSON below;
//	                              key_hex=HEX instead of key gives the key's bytes in hex
//
// Errors are JSON too: {"error": "..."}, with a 4xx or 5xx status.

// monitorServer is the runtime's HTTP server.
type monitorServer struct {
	rt   *Runtime
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve returned
}

// viewWait bounds how long a table query waits for a new view of the
// table to catch up.
const viewWait = 10 * time.Second

// startMonitor listens on addr and serves the monitor until close.
func startMonitor(rt *Runtime, addr string) (*monitorServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("runtime: monitor: %w", err)
	}
	m := &monitorServer{rt: rt, ln: ln, done: make(chan struct{})}
	assets, err := fs.Sub(monitor.Assets, "assets")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("runtime: monitor: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(rt.metrics.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/topology", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, rt.topo.Graph())
	})
	mux.HandleFunc("GET /api/groups", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, rt.monitorStatus())
	})
	mux.HandleFunc("GET /api/tables/{group}", m.serveTable)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rt.logger.Error("monitor stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	rt.logger.Info("monitor listening", "addr", "http://"+ln.Addr().String()+"/")
	return m, nil
}

// close stops the server at once: the monitor's requests are short reads.
func (m *monitorServer) close() error {
	err := m.srv.Close()
	<-m.done
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	return nil
}

// MonitorAddr returns the address the monitor listens on (with the port
// chosen if Options.HTTPAddr asked for port 0), "" if it has none.
func (rt *Runtime) MonitorAddr() string {
	if rt.monitor == nil {
		return ""
	}
	return rt.monitor.ln.Addr().String()
}

// instanceJSON is this instance, as /api/groups shows it.
type instanceJSON struct {
	// Owner names this instance as the owner of its partitions:
	// Options.InstanceID if set, else its host and process id.
	Owner      string   `json:"owner"`
	InstanceID string   `json:"instance_id,omitempty"`
	Host       string   `json:"host"`
	PID        int      `json:"pid"`
	Brokers    []string `json:"brokers"`
}

// statusJSON is the answer of /api/groups.
type statusJSON struct {
	Instance instanceJSON `json:"instance"`
	Groups   []groupJSON  `json:"groups"`
}

// groupJSON is a group as this instance runs it.
type groupJSON struct {
	Name string `json:"name"`
	// Table is the group table's changelog, "" if it has none: the groups
	// with one can be queried.
	Table string `json:"table,omitempty"`
	// Partitions is the partition count of the group's inputs.
	Partitions int32 `json:"partitions"`
	// State is "idle" (Run not called), "joining", "restoring",
	// "running", "stopped" or "failed".
	State      string `json:"state"`
	Error      string `json:"error,omitempty"`
	Generation int32  `json:"generation"`
	Member     string `json:"member,omitempty"`
	// Owned are the partitions this instance owns, in order.
	Owned []partitionJSON `json:"owned"`
}

// partitionJSON is a partition this instance owns.
type partitionJSON struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	// State is "restoring", "running", "failed" (its record or restore
	// failed) or "stopped" (the group failed).
	State        string        `json:"state"`
	Error        string        `json:"error,omitempty"`
	Processed    int64         `json:"processed"`
	Failed       int64         `json:"failed"`
	Skipped      int64         `json:"skipped"`
	DeadLettered int64         `json:"dead_lettered"`
	Inputs       []inputJSON   `json:"inputs"`
	Restores     []restoreJSON `json:"restores"`
}

// inputJSON is how far an input partition is processed.
type inputJSON struct {
	Topic string `json:"topic"`
	// Offset is the next offset to process, -1 while not known.
	Offset        int64 `json:"offset"`
	HighWatermark int64 `json:"high_watermark"`
	// Lag is HighWatermark - Offset, -1 while not known.
	Lag int64 `json:"lag"`
}

// restoreJSON is the progress of a table partition's restore.
type restoreJSON struct {
	Topic     string `json:"topic"`
	Restored  int64  `json:"restored"`
	Remaining int64  `json:"remaining"`
	Total     int64  `json:"total"`
}

// instance describes this instance.
func (rt *Runtime) instance() instanceJSON {
	host, _ := os.Hostname()
	in := instanceJSON{InstanceID: rt.opts.InstanceID, Host: host, PID: os.Getpid(), Brokers: rt.Brokers()}
	in.Owner = rt.opts.InstanceID
	if in.Owner == "" {
		in.Owner = fmt.Sprintf("%s (pid %d)", host, in.PID)
	}
	return in
}

// monitorStatus gathers what /api/groups shows.
func (rt *Runtime) monitorStatus() statusJSON {
	out := statusJSON{Instance: rt.instance(), Groups: []groupJSON{}}
	for _, spec := range rt.topo.Groups() {
		g := groupJSON{Name: spec.Name, Table: spec.Table, State: "idle", Owned: []partitionJSON{}}
		for _, in := range spec.Inputs {
			if !in.Loop {
				g.Partitions = rt.counts[in.Topic]
				break
			}
		}
		if h := rt.handler(spec.Name); h != nil {
			h.mu.Lock()
			g.Generation, g.Member = h.generation, h.member
			ended, endErr := h.ended, h.endErr
			h.mu.Unlock()
			restoring, failed := false, error(nil)
			for _, st := range h.statuses() {
				p := partitionJSON{
					Partition: st.p, Owner: out.Instance.Owner, State: st.getState().String(),
					Processed: st.counters.processed.Load(), Failed: st.counters.failed.Load(),
					Skipped: st.counters.skipped.Load(), DeadLettered: st.counters.deadLettered.Load(),
					Inputs: []inputJSON{}, Restores: []restoreJSON{},
				}
				if err := st.failure(); err != nil {
					p.Error = err.Error()
					if st.getState() == stateFailed && failed == nil {
						failed = err
					}
				}
				restoring = restoring || st.getState() == stateRestoring
				for _, in := range sortedInputs(spec, st.positions()) {
					p.Inputs = append(p.Inputs, inputJSON{Topic: in.topic, Offset: in.next.Load(), HighWatermark: in.hw(), Lag: in.lag()})
				}
				for _, r := range st.restoreList() {
					p.Restores = append(p.Restores, restoreJSON{Topic: r.topic, Restored: r.restored.Load(), Remaining: r.remaining.Load(), Total: r.total.Load()})
				}
				g.Owned = append(g.Owned, p)
			}
			switch {
			case endErr != nil || failed != nil:
				g.State = "failed"
				// The error that stopped the group, which names the
				// partition's if a partition's stopped it.
				g.Error = cmp.Or(endErr, failed).Error()
			case ended:
				g.State = "stopped"
			case g.Generation == 0:
				g.State = "joining"
			case restoring:
				g.State = "restoring"
			default:
				g.State = "running"
			}
		}
		out.Groups = append(out.Groups, g)
	}
	return out
}

// tableJSON is the answer of /api/tables/{group}.
type tableJSON struct {
	Group string `json:"group"`
	// Key is the key as given (key_hex's hex for a binary key).
	Key       string `json:"key"`
	Partition int32  `json:"partition"`
	// Source is "local" if the row was read from this instance's store of
	// the key's partition, "view" if from a view of the whole table.
	Source string `json:"source"`
	Found  bool   `json:"found"`
	// Value is the row decoded by the table's codec, as text: strings as
	// they are, other values as JSON. Raw is the row's bytes, as text if
	// they are printable UTF-8 (RawEncoding "text"), else in hex ("hex").
	Value       string `json:"value,omitempty"`
	Raw         string `json:"raw,omitempty"`
	RawEncoding string `json:"raw_encoding,omitempty"`
}

// serveTable answers a table query: from this instance's store if it owns
// the key's partition, else through a view of the table, started at the
// first such query and kept until Close.
func (m *monitorServer) serveTable(w http.ResponseWriter, r *http.Request) {
	rt := m.rt
	name := r.PathValue("group")
	spec, ok := rt.topo.Group(name)
	if !ok || spec.Table == "" {
		writeError(w, http.StatusNotFound, fmt.Errorf("no group %q with a table", name))
		return
	}
	keyCodec, valueCodec, _ := rt.topo.TableCodecs(name)
	q := r.URL.Query()
	out := tableJSON{Group: name}
	var key []byte
	switch {
	case q.Has("key_hex"):
		out.Key = q.Get("key_hex")
		k, err := hex.DecodeString(out.Key)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("key_hex: %w", err))
			return
		}
		key = k
	case q.Has("key"):
		out.Key = q.Get("key")
		k, err := encodeText(keyCodec, out.Key)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("key %q: %w", out.Key, err))
			return
		}
		key = k
	default:
		writeError(w, http.StatusBadRequest, errors.New("give the key as key or key_hex"))
		return
	}
	out.Partition = partition.For(key, rt.counts[spec.Table])
	value, found, local := rt.localRow(name, out.Partition, key)
	if local {
		out.Source = "local"
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), viewWait)
		defer cancel()
		v, err := rt.tableView(ctx, name, spec.Table)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
		if value, found, err = v.get(key); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out.Source = "view"
	}
	if out.Found = found; found {
		out.Raw, out.RawEncoding = bytesText(value)
		out.Value = decodeText(valueCodec, value)
	}
	writeJSON(w, http.StatusOK, out)
}

// localRow reads a row of a group's table from this instance's store of
// partition p. local is false if this instance does not own p (or its
// store just closed): the caller reads the row elsewhere.
func (rt *Runtime) localRow(group string, p int32, key []byte) (value []byte, found, local bool) {
	h := rt.handler(group)
	if h == nil {
		return nil, false, false
	}
	h.mu.Lock()
	t := h.tasks[p]
	h.mu.Unlock()
	if t == nil || t.table == nil {
		return nil, false, false
	}
	// The table's pending changes and cache are the processing's: read
	// between two records.
	t.procMu.Lock()
	v, ok, err := t.table.get(key)
	v = bytes.Clone(v)
	t.procMu.Unlock()
	if err != nil {
		return nil, false, false
	}
	return v, ok, true
}

// tableView returns the monitor's view of a group's table, caught up as of
// its start, starting it at the first call.
func (rt *Runtime) tableView(ctx context.Context, group, topic string) (*view, error) {
	rt.viewsMu.Lock()
	v := rt.views[group]
	if v == nil {
		var err error
		if v, err = startView(rt.bg, rt.client, rt.client.Offsets, topic, rt.counts[topic]); err != nil {
			rt.viewsMu.Unlock()
			return nil, fmt.Errorf("view of %s: %w", group, err)
		}
		rt.views[group] = v
	}
	rt.viewsMu.Unlock()
	if err := v.wait(ctx); err != nil {
		return nil, fmt.Errorf("view of %s: %w", group, err)
	}
	return v, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The client going away is the only way this fails: nothing to do.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// bytesText shows b as text if it is printable UTF-8, else in hex.
func bytesText(b []byte) (text, encoding string) {
	if utf8.Valid(b) && !bytes.ContainsFunc(b, func(r rune) bool { return !unicode.IsPrint(r) && !unicode.IsSpace(r) }) {
		return string(b), "text"
	}
	return hex.EncodeToString(b), "hex"
}

// The monitor knows a table's codecs only as values of some
// processor.Codec[T], T unknown: encodeText and decodeText call their
// Encode and Decode by reflection.

// encodeText encodes text as a key through codec: text itself for a codec
// of strings or bytes, else text read as the JSON of the codec's type (42
// for an int64). Without a usable codec, the key is text's bytes.
func encodeText(codec any, text string) ([]byte, error) {
	if codec == nil {
		return []byte(text), nil
	}
	enc := reflect.ValueOf(codec).MethodByName("Encode")
	if !enc.IsValid() || enc.Type().NumIn() != 1 || enc.Type().NumOut() != 2 {
		return []byte(text), nil
	}
	in := enc.Type().In(0)
	var arg reflect.Value
	switch {
	case in.Kind() == reflect.String:
		arg = reflect.ValueOf(text).Convert(in)
	case in.Kind() == reflect.Slice && in.Elem().Kind() == reflect.Uint8:
		arg = reflect.ValueOf([]byte(text)).Convert(in)
	default:
		p := reflect.New(in)
		if err := json.Unmarshal([]byte(text), p.Interface()); err != nil {
			return nil, fmt.Errorf("not a %s: %w", in, err)
		}
		arg = p.Elem()
	}
	out := enc.Call([]reflect.Value{arg})
	if err, _ := out[1].Interface().(error); err != nil {
		return nil, err
	}
	b, ok := out[0].Interface().([]byte)
	if !ok {
		return nil, fmt.Errorf("codec %T encodes to %s", codec, out[0].Type())
	}
	return b, nil
}

// decodeText decodes b through codec and returns the value as text:
// strings as they are, bytes as bytesText shows them, other values as
// JSON. It returns "" if the codec cannot decode b.
func decodeText(codec any, b []byte) string {
	if codec == nil {
		return ""
	}
	dec := reflect.ValueOf(codec).MethodByName("Decode")
	if !dec.IsValid() || dec.Type().NumIn() != 1 || dec.Type().NumOut() != 2 ||
		dec.Type().In(0) != reflect.TypeFor[[]byte]() {
		return ""
	}
	out := dec.Call([]reflect.Value{reflect.ValueOf(b)})
	if err, _ := out[1].Interface().(error); err != nil {
		return ""
	}
	v := out[0]
	switch {
	case v.Kind() == reflect.String:
		return v.String()
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8:
		text, _ := bytesText(v.Bytes())
		return text
	}
	j, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return string(j)
}

// sortedInputs orders a partition's input positions as the group declares
// its inputs (the loop last), rather than as their claims happened to
// start.
func sortedInputs(spec topology.GroupSpec, ins []*inputPosition) []*inputPosition {
	rank := func(topic string) int {
		return slices.IndexFunc(spec.Inputs, func(in topology.InputSpec) bool { return in.Topic == topic })
	}
	slices.SortStableFunc(ins, func(a, b *inputPosition) int { return cmp.Compare(rank(a.topic), rank(b.topic)) })
	return ins
}
