package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/runnel-io/runnel/broker"
)

// monitorAssets is the monitor page: index.html and the script that
// renders /api/status into it. They are shipped in the binary, so the page
// needs nothing from the network but the broker.
//
//go:embed monitor
var monitorAssets embed.FS

// monitorHandler serves, for one broker:
//
//	GET /metrics      the Prometheus metrics gathered from g
//	GET /api/status   b.Status() as JSON
//	GET /             the monitor page, which renders /api/status
func monitorHandler(b *broker.Broker, g prometheus.Gatherer, logger *slog.Logger) http.Handler {
	assets, err := fs.Sub(monitorAssets, "monitor")
	if err != nil {
		panic(err) // the embedded directory is there by construction
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		body, err := json.Marshal(b.Status())
		if err != nil {
			logger.Error("encode broker status", "err", err)
			http.Error(w, "encode broker status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(body, '\n'))
	})
	mux.Handle("GET /", http.FileServerFS(assets))
	return mux
}

// monitor is the HTTP server of runnel serve --metrics.
type monitor struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve returns, with its error in err
	err  error
}

// startMonitor listens on addr and serves monitorHandler until shutdown.
func startMonitor(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) (*monitor, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	m := &monitor{
		srv: &http.Server{
			Handler: h,
			// A scraper or a browser that stalls must not hold a
			// connection forever.
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		m.err = m.srv.Serve(ln)
		close(m.done)
	}()
	return m, nil
}

// Addr is the address the monitor listens on.
func (m *monitor) Addr() string { return m.ln.Addr().String() }

// Done is closed if the server stops serving before shutdown, which only a
// failing listener makes it do; Err then says why.
func (m *monitor) Done() <-chan struct{} { return m.done }

// Err is why the server stopped, once Done is closed.
func (m *monitor) Err() error {
	<-m.done
	if errors.Is(m.err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("monitor: %w", m.err)
}

// shutdown stops the server, letting requests in progress finish for up to
// a few seconds. It reports only its own failure: why Serve returned, if it
// did so before, is Err's to say.
func (m *monitor) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop monitor: %w", err)
	}
	return nil
}
