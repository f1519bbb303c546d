// Command demo is a small application that asks its own sluice sidecar
// before each unit of work, as a service behind sluice would. It checks one
// key at a fixed rate through the Go client (falling back to a local bucket
// holding its share of the limit when the sidecar cannot be reached), and
// serves what it counted on GET /stats, for people and for the end-to-end
// tests.
//
//	demo --rate 40 --key shared --rule demo --fallback-limit 10 --fallback-period 1s
//	demo --sidecar unix:/run/sluice/api.sock --format json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/client"
)

// stats is what the demo counted. Fallbacks are checks the sidecar could
// not answer, decided by the local bucket (FallbackAllowed of them
// allowed); errors are checks that could not be decided at all.
type stats struct {
	Checks          int64 `json:"checks"`
	Allowed         int64 `json:"allowed"`
	Denied          int64 `json:"denied"`
	Fallbacks       int64 `json:"fallbacks"`
	FallbackAllowed int64 `json:"fallback_allowed"`
	Errors          int64 `json:"errors"`
}

type counters struct {
	checks, allowed, denied, fallbacks, fallbackAllowed, errors atomic.Int64
}

func (c *counters) snapshot() stats {
	return stats{c.checks.Load(), c.allowed.Load(), c.denied.Load(), c.fallbacks.Load(), c.fallbackAllowed.Load(), c.errors.Load()}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	sidecar := fs.String("sidecar", "http://127.0.0.1:8080", "the sidecar's API: http://host:port, or unix:/path of its Unix socket")
	format := fs.String("format", "msgpack", "body format: msgpack or json")
	addr := fs.String("addr", "0.0.0.0:9090", "`host:port` serving GET /stats")
	rate := fs.Float64("rate", 40, "checks per second")
	key := fs.String("key", "shared", "the key checked")
	rule := fs.String("rule", "demo", "the rule checked")
	fbLimit := fs.Int64("fallback-limit", 10, "tokens per period of the local bucket used when the sidecar is unreachable: this instance's share")
	fbPeriod := fs.Duration("fallback-period", time.Second, "period of the fallback bucket")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 || *fbLimit <= 0 || *fbPeriod <= 0 {
		return errors.New("--rate, --fallback-limit and --fallback-period must be positive")
	}
	formats := map[string]client.Format{"msgpack": client.Msgpack, "json": client.JSON}
	f, ok := formats[*format]
	if !ok {
		return fmt.Errorf("--format must be msgpack or json, got %q", *format)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	c := client.New(client.Config{
		URL:      *sidecar,
		Format:   f,
		Stance:   client.FailLocal,
		Fallback: bucket.Limit{Rate: *fbLimit, Period: *fbPeriod, Burst: *fbLimit},
	})
	var n counters
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.snapshot())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("demo started", "sidecar", *sidecar, "rate", *rate, "key", *key, "rule", *rule, "stats", ln.Addr().String())

	tick := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer tick.Stop()
	report := time.NewTicker(10 * time.Second)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("demo stopped", "stats", n.snapshot())
			return nil
		case <-report.C:
			log.Info("demo", "stats", n.snapshot())
		case <-tick.C:
			// Each check in its own goroutine: a slow sidecar delays no
			// other check (the arrival rate stays fixed).
			go func() {
				res, err := c.Allow(ctx, *key, client.Rule(*rule))
				n.checks.Add(1)
				switch {
				case err != nil:
					if ctx.Err() == nil {
						n.errors.Add(1)
					}
				case res.Allowed:
					n.allowed.Add(1)
				default:
					n.denied.Add(1)
				}
				if res.Unavailable {
					n.fallbacks.Add(1)
					if res.Allowed {
						n.fallbackAllowed.Add(1)
					}
				}
			}()
		}
	}
}
