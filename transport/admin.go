package transport

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts and limits of every HTTP server sluice runs. The API's handlers
// answer in microseconds, so these bound only slow or idle clients
// (slowloris); /v1/wait extends its own write deadline by its max_wait.
const (
	readHeaderTimeout = 2 * time.Second
	readTimeout       = 5 * time.Second
	writeTimeout      = 5 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
)

// NewHTTPServer returns an http.Server for h with sluice's timeouts and
// header limit. Its errors are logged to logger at warn level.
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// AdminConfig configures the admin endpoints.
type AdminConfig struct {
	// Ready reports readiness: serving with rules loaded and not shutting
	// down. Required; it must not block.
	Ready func() bool
	// Gatherer is served at /metrics. Required.
	Gatherer prometheus.Gatherer
	// Keyring serves /v1/keyring: list, install, use and remove gossip
	// keys. If nil, the endpoints are absent.
	Keyring Keyring
}

// NewAdmin returns the admin handler: /healthz (the process answers),
// /readyz (Ready), /metrics (Prometheus text format) and /v1/keyring. It belongs on a
// loopback or otherwise private address, never on the API port's public
// face.
func NewAdmin(cfg AdminConfig) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready() {
			writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, []byte(`{"status":"not ready"}`+"\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	if cfg.Keyring != nil {
		kh := keyringHandler(cfg.Keyring)
		mux.Handle("/v1/keyring", kh)
		mux.Handle("/v1/keyring/", kh)
	}
	return mux
}
