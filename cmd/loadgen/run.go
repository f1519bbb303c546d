package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Config is one load run.
type Config struct {
	Targets     []string      // API base URLs; requests go round-robin
	Open        bool          // open loop: fixed arrival rate
	Rate        float64       // open loop: requests per second
	Concurrency int           // closed loop: workers; open loop: most requests in flight
	Duration    time.Duration // how long to send
	Keys        int           // distinct keys
	Dist        string        // uniform, zipf or hot
	ZipfS       float64       // the Zipf exponent, > 1
	Rule        string        // a named rule, or
	Limit       bucket.Limit  // an inline limit
	Sync        string        // the sync mode, "" for the rule's
	Op          string        // check, batch, wait or envoy
	Format      string        // body format: json (the default) or msgpack
	Batch       int           // checks per batch, or descriptors per Envoy request
	GRPCTargets []string      // envoy: host:port of each node's --grpc-addr
	Domain      string        // envoy: the domain of the requests
	Seed        uint64        // of the key draws
	Progress    io.Writer     // a line a second; nil for none
}

// Result is what a run measured. Latencies are of requests (a batch is one
// request); in an open loop they count from the time the request was due,
// so a stall is not hidden (no coordinated omission).
type Result struct {
	Config      ConfigView `json:"config"`
	Elapsed     float64    `json:"elapsed_s"`
	Requests    int64      `json:"requests"`
	Decisions   int64      `json:"decisions"`
	Allowed     int64      `json:"allowed"`
	Denied      int64      `json:"denied"`
	Errors      int64      `json:"errors"`
	Fallbacks   int64      `json:"fallbacks"` // owner mode: decided from a fair share, the owner unreachable or too slow
	Late        int64      `json:"late"`      // open loop: sent later than due, its sender still busy
	RequestsPS  float64    `json:"requests_per_s"`
	DecisionsPS float64    `json:"decisions_per_s"`
	Latency     Latency    `json:"latency_ms"`
	// GeneratorCPU is the share of the machine (every core) this load
	// generator used while it ran: 0.5 is one core of two.
	GeneratorCPU float64 `json:"generator_cpu_share"`
	// ServerCPU is the share of the machine the processes under load used
	// in the run, when the report started them.
	ServerCPU  float64   `json:"server_cpu_share,omitempty"`
	Exactness  Exactness `json:"exactness"`
	FirstError string    `json:"first_error,omitempty"`
}

// ConfigView is Config as the JSON result shows it.
type ConfigView struct {
	Targets     []string `json:"targets"`
	Loop        string   `json:"loop"`
	Rate        float64  `json:"rate,omitempty"`
	Concurrency int      `json:"concurrency"`
	Duration    float64  `json:"duration_s"`
	Keys        int      `json:"keys"`
	Dist        string   `json:"dist"`
	Rule        string   `json:"rule,omitempty"`
	Limit       string   `json:"limit"`
	Sync        string   `json:"sync,omitempty"`
	Op          string   `json:"op"`
	Batch       int      `json:"batch,omitempty"`
	Format      string   `json:"format,omitempty"`
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// Exactness compares, per key, what was admitted with the limit's bound
// over the run: burst + rate × elapsed / period.
type Exactness struct {
	Bound      int64   `json:"bound_per_key"`
	WorstKey   string  `json:"worst_key,omitempty"`
	WorstRatio float64 `json:"worst_ratio"` // admitted / bound of the worst key
	Over       int     `json:"keys_over_bound"`
	KeysSeen   int     `json:"keys_admitted"`
}

// run drives the load and measures it.
func run(ctx context.Context, cfg Config) (Result, error) {
	if len(cfg.Targets) == 0 || cfg.Duration <= 0 || cfg.Keys <= 0 || cfg.Concurrency <= 0 {
		return Result{}, errors.New("need targets, a duration, keys and a concurrency")
	}
	if cfg.Open && cfg.Rate <= 0 {
		return Result{}, errors.New("an open loop needs a rate")
	}
	limit := cfg.Limit
	if cfg.Rule != "" {
		l, err := ruleLimit(ctx, cfg.Targets[0], cfg.Rule)
		if err != nil {
			return Result{}, err
		}
		limit = l
	}
	path, per := "/v1/check", 1
	switch cfg.Op {
	case "check":
	case "batch":
		path, per = "/v1/check/batch", max(cfg.Batch, 1)
	case "wait":
		path = "/v1/wait"
	case "envoy":
		per = max(cfg.Batch, 1)
	default:
		return Result{}, fmt.Errorf("unknown op %q", cfg.Op)
	}
	bases, tr := targetTransport(cfg.Targets, cfg.Concurrency+16)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	keys := newKeys(cfg)
	// Calls in flight when the run ends are answered, not cut off (the
	// HTTP client's are not either): they use the caller's context.
	callCtx := ctx
	var ec *envoyCaller
	if cfg.Op == "envoy" {
		var err error
		if ec, err = newEnvoyCaller(cfg.GRPCTargets, cfg.Domain); err != nil {
			return Result{}, err
		}
		defer ec.close()
	}

	var (
		requests, decisions, allowed, denied, errs, late, fallbacks atomic.Int64
		firstErr                                                    atomic.Value
		mu                                                          sync.Mutex
		lat                                                         []time.Duration
		admitted                                                    = map[string]int64{}
		next                                                        atomic.Uint64
	)
	post := func(target string, keysOf []string) ([]bool, error) {
		body := encodeRequest(make([]byte, 0, 128*per), keysOf, cfg, limit)
		resp, err := client.Post(target+path, contentType(cfg.Format), bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return nil, err
		case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusTooManyRequests:
			return nil, fmt.Errorf("%d: %s", resp.StatusCode, bytes.TrimSpace(raw))
		}
		verdict, fb := verdicts(raw, cfg.Format)
		fallbacks.Add(int64(fb))
		if len(verdict) != per {
			return nil, fmt.Errorf("%d answers to %d checks: %q", len(verdict), per, raw)
		}
		return verdict, nil
	}
	one := func(due time.Time, key func() string, local *[]time.Duration, adm map[string]int64) {
		keysOf := make([]string, per)
		for i := range keysOf {
			keysOf[i] = key()
		}
		var verdict []bool
		var err error
		if ec != nil {
			verdict, err = ec.call(callCtx, keysOf)
		} else {
			verdict, err = post(bases[next.Add(1)%uint64(len(bases))], keysOf)
		}
		*local = append(*local, time.Since(due))
		requests.Add(1)
		if err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		for i, ok := range verdict {
			decisions.Add(1)
			if ok {
				allowed.Add(1)
				adm[keysOf[i]]++
			} else {
				denied.Add(1)
			}
		}
	}
	merge := func(local []time.Duration, adm map[string]int64) {
		mu.Lock()
		lat = append(lat, local...)
		for k, n := range adm {
			admitted[k] += n
		}
		mu.Unlock()
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start, cpuStart := time.Now(), cpuTime()
	stopProgress := progress(cfg.Progress, start, &requests, &decisions, &errs)
	var wg sync.WaitGroup
	if cfg.Open {
		// Arrivals at fixed intervals, dealt round-robin to Concurrency
		// senders: sender w sends arrivals w, w+W, w+2W, ... each when it
		// is due, or at once if it is already late (a slow answer delays
		// its sender's next request: counted as late, and its latency
		// counts from when it was due, so the stall is not hidden).
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		for w := range cfg.Concurrency {
			wg.Go(func() {
				key := keys(rand.New(rand.NewPCG(cfg.Seed, uint64(w))))
				var local []time.Duration
				adm := map[string]int64{}
				for k := int64(w); ; k += int64(cfg.Concurrency) {
					due := start.Add(time.Duration(k) * interval)
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
						}
					} else if d < -interval {
						late.Add(1)
					}
					if ctx.Err() != nil {
						break
					}
					one(due, key, &local, adm)
				}
				merge(local, adm)
			})
		}
	} else {
		for w := range cfg.Concurrency {
			wg.Go(func() {
				key := keys(rand.New(rand.NewPCG(cfg.Seed, uint64(w))))
				var local []time.Duration
				adm := map[string]int64{}
				for ctx.Err() == nil {
					one(time.Now(), key, &local, adm)
				}
				merge(local, adm)
			})
		}
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpuStart

	res := Result{
		Config:    view(cfg, limit),
		Elapsed:   elapsed.Seconds(),
		Requests:  requests.Load(),
		Decisions: decisions.Load(),
		Allowed:   allowed.Load(),
		Denied:    denied.Load(),
		Errors:    errs.Load(),
		Late:      late.Load(),
		Fallbacks: fallbacks.Load(),
	}
	res.RequestsPS = float64(res.Requests) / elapsed.Seconds()
	res.DecisionsPS = float64(res.Decisions) / elapsed.Seconds()
	res.Latency = percentiles(lat)
	res.GeneratorCPU = cpu.Seconds() / elapsed.Seconds() / float64(runtime.NumCPU())
	res.Exactness = exactness(admitted, limit, elapsed)
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res, nil
}

// newKeys returns the key distribution: given a random source, a function
// drawing keys from it.
func newKeys(cfg Config) func(*rand.Rand) func() string {
	names := make([]string, cfg.Keys)
	for i := range names {
		names[i] = "load-" + strconv.Itoa(i)
	}
	switch cfg.Dist {
	case "hot":
		return func(*rand.Rand) func() string { return func() string { return names[0] } }
	case "zipf":
		s := cfg.ZipfS
		if s <= 1 {
			s = 1.1
		}
		return func(rng *rand.Rand) func() string {
			z := rand.NewZipf(rng, s, 1, uint64(max(cfg.Keys-1, 1)))
			return func() string { return names[min(z.Uint64(), uint64(cfg.Keys-1))] }
		}
	}
	return func(rng *rand.Rand) func() string { return func() string { return names[rng.IntN(cfg.Keys)] } }
}

// ruleLimit asks a node for a named rule's limit.
func ruleLimit(ctx context.Context, target, name string) (bucket.Limit, error) {
	bases, tr := targetTransport([]string{target}, 1)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, bases[0]+"/v1/rules", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return bucket.Limit{}, err
	}
	defer resp.Body.Close()
	var list struct{ Rules []rules.Spec }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return bucket.Limit{}, fmt.Errorf("GET /v1/rules: %w", err)
	}
	for _, s := range list.Rules {
		if s.Name == name {
			r, err := s.Rule()
			return r.Limit, err
		}
	}
	return bucket.Limit{}, fmt.Errorf("no rule %q on %s", name, target)
}
