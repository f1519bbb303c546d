// Command loadgen drives load against sluice nodes and measures it:
// throughput, latency percentiles, errors, and exactness (per key, what was
// admitted against burst + rate × elapsed).
//
//	loadgen run --targets http://127.0.0.1:8080 --rate 5000 --duration 10s --dist zipf --keys 10000 --limit 100 --period 1s
//	loadgen run --closed --concurrency 32 --op batch --batch 100 ...
//	loadgen run --op envoy --grpc-targets 127.0.0.1:8082 --domain loadgen --limit 100 --period 1s --algorithm fixed_window
//	loadgen trivial --addr 127.0.0.1:9000     # the ceiling: a trivial net/http JSON handler
//	loadgen report --out docs/report.md       # the benchmark report (starts its own nodes)
//
// run prints a progress line a second on stderr and a summary on stdout;
// --json writes the result as JSON.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicerl/sluice/rules"
	"github.com/sluicerl/sluice/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: loadgen run|trivial|report [flags]")
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "trivial":
		return trivialCmd(ctx, args[1:])
	case "report":
		return reportCmd(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q: want run, trivial or report", args[0])
}

// runFlags parses the flags of a run.
func runFlags(args []string, stderr io.Writer) (Config, string, error) {
	var cfg Config
	fs := flag.NewFlagSet("loadgen run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", "http://127.0.0.1:8080", "comma-separated API base URLs (http://host:port, or unix:/path of a Unix socket); requests go round-robin")
	closed := fs.Bool("closed", false, "closed loop: --concurrency workers, each sending its next request when the last is answered (default: open loop at --rate)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "open loop: requests per second")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "closed loop: workers; open loop: most requests in flight")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&cfg.Keys, "keys", 1000, "distinct keys")
	fs.StringVar(&cfg.Dist, "dist", "uniform", "key distribution: uniform, zipf or hot (one key)")
	fs.Float64Var(&cfg.ZipfS, "zipf-s", 1.1, "Zipf exponent (> 1)")
	fs.StringVar(&cfg.Rule, "rule", "", "a named rule (its limit is read from the first target); else the inline limit below")
	limit := fs.Int64("limit", 100, "inline limit: tokens per period")
	period := fs.Duration("period", time.Second, "inline limit: period")
	burst := fs.Int64("burst", 0, "inline limit: burst, or a leaky bucket's depth (default: the limit; none for the window algorithms)")
	algorithm := fs.String("algorithm", "", "inline limit: token_bucket (default), leaky_bucket, fixed_window, sliding_window_log or sliding_window")
	fs.StringVar(&cfg.Sync, "sync", "", "sync mode: local, gossip, owner or auto (default: the rule's)")
	fs.StringVar(&cfg.Op, "op", "check", "check, batch, wait, or envoy (Envoy's ShouldRateLimit over gRPC, one descriptor {key: <key>} per check; give --limit, --period and --algorithm as the Envoy configuration has them, for the exactness figures)")
	fs.IntVar(&cfg.Batch, "batch", 100, "checks per batch (--op batch), or descriptors per request (--op envoy, default 1)")
	grpcTargets := fs.String("grpc-targets", "127.0.0.1:8082", "--op envoy: comma-separated host:port of the nodes' --grpc-addr; calls go round-robin")
	fs.StringVar(&cfg.Domain, "domain", "loadgen", "--op envoy: the domain of the requests")
	fs.StringVar(&cfg.Format, "format", "json", "body format: json or msgpack")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed of the key draws")
	jsonOut := fs.String("json", "", "write the result as JSON to this `file` (- for stdout)")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	cfg.Targets = strings.Split(*targets, ",")
	if cfg.Format != "json" && cfg.Format != "msgpack" {
		return cfg, "", fmt.Errorf("--format must be json or msgpack, got %q", cfg.Format)
	}
	if cfg.Op == "envoy" {
		cfg.GRPCTargets = strings.Split(*grpcTargets, ",")
		cfg.Targets = cfg.GRPCTargets
		if !batchSet(fs) {
			cfg.Batch = 1
		}
	}
	cfg.Open = !*closed
	if cfg.Rule == "" {
		algo, err := rules.ParseAlgorithm(*algorithm)
		if err != nil {
			return cfg, "", err
		}
		l, err := rules.NewLimit(*limit, *period, *burst, algo)
		if err != nil {
			return cfg, "", err
		}
		cfg.Limit = l
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	return cfg, *jsonOut, nil
}

// batchSet reports whether --batch was given.
func batchSet(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "batch" })
	return set
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, jsonOut, err := runFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, summary(res))
	if jsonOut == "" {
		return nil
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if jsonOut == "-" {
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	return os.WriteFile(jsonOut, append(b, '\n'), 0o644)
}

// trivialHandler is the ceiling the check endpoint is held against: a
// net/http handler that decodes a small JSON body and writes a small JSON
// answer (the same as transport's BenchmarkLoopback uses).
func trivialHandler(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"allowed":true}`)
}

func trivialCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen trivial", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9000", "`host:port` to serve on, or unix:/path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := transport.Listen(*addr, 0o600)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(trivialHandler), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	fmt.Fprintln(os.Stderr, "trivial handler on", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
