package transport

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
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
	// Status serves the status page (/) and its data (/v1/status). If nil,
	// they are absent.
	Status StatusSource
	// Version is the build's version, shown on the status page and in
	// /v1/status.
	Version string
	// Keys serves /v1/keys/inspect, /v1/keys/reset and /debug/top-denied.
	// If nil, they are absent.
	Keys KeyAdmin
	// Token, if set, is required of every request to the Keys endpoints,
	// the keyring and the profiler (Authorization: Bearer <token>); if
	// empty, they answer loopback clients only.
	Token string
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
		// The keyring holds the gossip key, from which the peer
		// protocol's key is derived: guarded as the key endpoints are.
		kh := guard(cfg.Token, keyringHandler(cfg.Keyring).ServeHTTP)
		mux.Handle("/v1/keyring", kh)
		mux.Handle("/v1/keyring/", kh)
	}
	if cfg.Keys != nil {
		keysHandlers(mux, cfg.Keys, cfg.Token)
	}
	if cfg.Status != nil {
		statusHandlers(mux, cfg.Status, cfg.Version, cfg.Token)
	}
	// Go's profiler, here only, never on the API port, and guarded: its
	// cmdline shows flags such as --gossip-key and --admin-token, and a
	// profile costs CPU for as long as the client asks.
	mux.Handle("/debug/pprof/", guard(cfg.Token, pprof.Index))
	mux.Handle("/debug/pprof/cmdline", guard(cfg.Token, pprof.Cmdline))
	mux.Handle("/debug/pprof/symbol", guard(cfg.Token, pprof.Symbol))
	mux.Handle("/debug/pprof/profile", guard(cfg.Token, longWrite(pprof.Profile).ServeHTTP))
	mux.Handle("/debug/pprof/trace", guard(cfg.Token, longWrite(pprof.Trace).ServeHTTP))
	return mux
}

// longWrite lets a profile run for its ?seconds= (default 30) past the
// server's write timeout: it extends the connection's write deadline, and
// hides the server from the profiler, which would otherwise refuse any
// duration above the timeout.
func longWrite(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || secs <= 0 {
			secs = 30
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Duration(secs)*time.Second + writeTimeout))
		h(w, r.WithContext(context.WithValue(r.Context(), http.ServerContextKey, nil)))
	})
}
