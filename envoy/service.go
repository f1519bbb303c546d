package envoy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// Limiter decides the checks of one request together; *cluster.Node fills
// it. CheckAll may block on the keys' owners, within ctx.
type Limiter interface {
	CheckAll(ctx context.Context, reqs []cluster.Request) ([]cluster.Result, error)
}

// ServiceConfig configures a Service. Zero fields mean defaults.
type ServiceConfig struct {
	// Limiter decides the checks. Required.
	Limiter Limiter
	// Ready reports whether the node serves checks; while it is false every
	// call answers UNAVAILABLE, so Envoy's failure_mode_deny decides.
	// Required.
	Ready func() bool
	// ResponseHeaders adds RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset to every answer with a limit (response_headers_to_add),
	// for the descriptor closest to its limit, as envoyproxy/ratelimit does
	// with LIMIT_RESPONSE_HEADERS_ENABLED. If false, no headers are added.
	ResponseHeaders bool
	// Shadow is the node's shadow mode (cluster.Config.Shadow): limits of
	// zero requests, which the node does not decide, are then not enforced
	// either.
	Shadow bool
	// Logger receives internal errors. If nil, they are discarded.
	Logger *slog.Logger
}

// Service answers envoy.service.ratelimit.v3.RateLimitService from the
// Envoy configuration it holds (SetConfig; none matches nothing). It is
// safe for concurrent use.
type Service struct {
	rls.UnimplementedRateLimitServiceServer
	cfg    ServiceConfig
	config atomic.Pointer[Config]
}

// NewService returns a Service for cfg, holding an empty configuration.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg}
	s.config.Store(&Config{})
	return s
}

// SetConfig puts c in force for the calls that follow. The node must hold
// c's rules (Config.Rules) first, so no call meets a limit whose rule it
// lacks.
func (s *Service) SetConfig(c *Config) { s.config.Store(c) }

// MaxDescriptors bounds the descriptors of one request (cluster.MaxBatch).
const MaxDescriptors = cluster.MaxBatch

// limited is one descriptor of a request that is checked against a limit.
type limited struct {
	desc  int    // its index in the request
	limit *Limit // as configured, or an override
	block bool   // requests_per_unit 0: every request is over
}

// ShouldRateLimit decides a request: each descriptor is matched to its
// limit, the limits are checked together (a request over on one descriptor
// spends nothing on the others; see cluster.Node.CheckAll), and the
// answer's statuses follow the request's descriptors. Bad input is
// INVALID_ARGUMENT naming the field and spends nothing; a node that is not
// ready answers UNAVAILABLE.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rls.RateLimitRequest) (*rls.RateLimitResponse, error) {
	if !s.cfg.Ready() {
		return nil, status.Error(codes.Unavailable, "sluice node not ready")
	}
	hits, err := validate(req)
	if err != nil {
		return nil, err
	}
	cfg := s.config.Load()
	resp, err := s.decide(ctx, cfg, req, hits)
	if errors.As(err, new(*rules.FieldError)) && s.config.Load() != cfg {
		// A reload removed a rule between match and check: the new
		// configuration no longer holds it.
		resp, err = s.decide(ctx, s.config.Load(), req, hits)
	}
	if err != nil {
		return nil, s.fail(err)
	}
	return resp, nil
}

// decide answers req, of hits per descriptor, under cfg. Its errors are
// bad input (a key too long, as a gRPC status) and the node's.
func (s *Service) decide(ctx context.Context, cfg *Config, req *rls.RateLimitRequest, hits []int64) (*rls.RateLimitResponse, error) {
	var err error
	resp := &rls.RateLimitResponse{OverallCode: rls.RateLimitResponse_OK,
		Statuses: make([]*rls.RateLimitResponse_DescriptorStatus, len(req.Descriptors))}
	checks, keys := s.match(cfg, req)
	for i, k := range keys {
		if len(k)+len(req.Domain)+1 > cluster.MaxKeyBytes {
			// A value the client controls (a path, a header) may be long:
			// it is still counted, under a digest of itself, never
			// refused (a refusal would lift every limit of the call for
			// an Envoy that fails open).
			keys[i] = longKey(k)
		}
	}
	var reqs []cluster.Request
	var idx []int // checks[idx[i]] made reqs[i]
	blocked := false
	for i := range checks {
		c := &checks[i]
		if c.block && !c.limit.Shadow && !s.cfg.Shadow {
			blocked = true
		}
		if c.limit.Rule == "" && !c.block && !c.limit.Unlimited {
			reqs = append(reqs, overrideRequest(req.Domain, keys[i], c.limit, hits[c.desc]))
			idx = append(idx, i)
		} else if c.limit.Rule != "" {
			reqs = append(reqs, cluster.Request{Rule: c.limit.Rule, Key: keys[i], Cost: hits[c.desc]})
			idx = append(idx, i)
		}
	}
	if blocked {
		for i := range reqs {
			reqs[i].Cost = 0 // a limit of 0 denies the request: read the others, spend nothing
		}
	}
	var results []cluster.Result
	if len(reqs) > 0 {
		if results, err = s.cfg.Limiter.CheckAll(ctx, reqs); err != nil {
			return nil, err
		}
	}
	for i := range req.Descriptors {
		resp.Statuses[i] = &rls.RateLimitResponse_DescriptorStatus{Code: rls.RateLimitResponse_OK}
	}
	for _, c := range checks {
		st := resp.Statuses[c.desc]
		switch {
		case c.limit.Unlimited:
			st.LimitRemaining = math.MaxUint32
			continue
		case c.block:
			if !c.limit.Shadow && !s.cfg.Shadow {
				st.Code = rls.RateLimitResponse_OVER_LIMIT
			}
		}
		st.CurrentLimit = &rls.RateLimitResponse_RateLimit{Name: c.limit.Name, RequestsPerUnit: c.limit.RequestsPerUnit, Unit: c.limit.Unit}
	}
	for j, r := range results {
		c := checks[idx[j]]
		st := resp.Statuses[c.desc]
		st.DurationUntilReset = durationpb.New(r.ResetAfter)
		if r.Policy.Rate != int64(c.limit.RequestsPerUnit) && r.Rule != "" {
			// The rule was changed through the API: say what was applied.
			st.CurrentLimit.RequestsPerUnit = clampRemaining(r.Policy.Rate)
			if u, ok := unitOf(r.Policy.Period); ok {
				st.CurrentLimit.Unit = u
			}
		}
		switch {
		case !r.Allowed:
			st.Code = rls.RateLimitResponse_OVER_LIMIT
		case r.ShadowDenied:
			// allowed, and at its limit
		default:
			st.LimitRemaining = clampRemaining(r.Remaining)
		}
	}
	for _, st := range resp.Statuses {
		if st.Code == rls.RateLimitResponse_OVER_LIMIT {
			resp.OverallCode = rls.RateLimitResponse_OVER_LIMIT
		}
	}
	if s.cfg.ResponseHeaders {
		resp.ResponseHeadersToAdd = headers(resp.Statuses)
	}
	return resp, nil
}

// match finds the limit of each descriptor, drops the limits that other
// matched limits replace, and returns the rest with their bucket keys.
func (s *Service) match(cfg *Config, req *rls.RateLimitRequest) ([]limited, []string) {
	var out []limited
	var keys []string
	var replaced map[string]bool
	_, known := cfg.domains[req.Domain]
	for i, d := range req.Descriptors {
		entries := make([]Entry, len(d.Entries))
		for j, e := range d.Entries {
			entries[j] = Entry{Key: e.Key, Value: e.Value}
		}
		var l *Limit
		key := ""
		if o := d.GetLimit(); o != nil && known {
			// An override from Envoy's route: counted as given, never in
			// shadow, as envoyproxy/ratelimit does.
			l, key = &Limit{RequestsPerUnit: o.RequestsPerUnit, Unit: rls.RateLimitResponse_RateLimit_Unit(o.Unit)}, bucketKey(entries)
		} else {
			l, key = cfg.Match(req.Domain, entries)
		}
		if l == nil {
			continue
		}
		for _, r := range l.Replaces {
			if replaced == nil {
				replaced = map[string]bool{}
			}
			replaced[r] = true
		}
		out = append(out, limited{desc: i, limit: l, block: !l.Unlimited && l.RequestsPerUnit == 0})
		keys = append(keys, key)
	}
	if replaced == nil {
		return out, keys
	}
	kept, kkeys := out[:0], keys[:0]
	for i, c := range out {
		if c.limit.Name != "" && replaced[c.limit.Name] {
			continue
		}
		kept, kkeys = append(kept, c), append(kkeys, keys[i])
	}
	return kept, kkeys
}

// overrideRequest is the check of a descriptor's own limit: a fixed window
// of its unit, keyed by domain and entries.
func overrideRequest(domain, key string, l *Limit, cost int64) cluster.Request {
	period, _ := UnitPeriod(l.Unit)
	rate := int64(l.RequestsPerUnit)
	return cluster.Request{Key: escape(domain) + "|" + key, Cost: cost,
		Inline: bucket.Limit{Rate: rate, Period: period, Burst: rate, Algo: bucket.FixedWindow}}
}

// validate checks what the node cannot decide, naming the field, and
// returns each descriptor's hits.
func validate(req *rls.RateLimitRequest) ([]int64, error) {
	switch {
	case req.Domain == "":
		return nil, invalid("domain: must not be empty")
	case len(req.Descriptors) == 0:
		return nil, invalid("descriptors: must not be empty")
	case len(req.Descriptors) > MaxDescriptors:
		return nil, invalid(fmt.Sprintf("descriptors: at most %d in one request, got %d", MaxDescriptors, len(req.Descriptors)))
	}
	hits := make([]int64, len(req.Descriptors))
	for i, d := range req.Descriptors {
		if d == nil || len(d.Entries) == 0 {
			return nil, invalid(fmt.Sprintf("descriptors[%d].entries: must not be empty", i))
		}
		for j, e := range d.Entries {
			if e.GetKey() == "" {
				return nil, invalid(fmt.Sprintf("descriptors[%d].entries[%d].key: must not be empty", i, j))
			}
		}
		if d.IsNegativeHits {
			return nil, invalid(fmt.Sprintf("descriptors[%d].is_negative_hits: not supported by sluice (it never gives tokens back on request)", i))
		}
		if o := d.Limit; o != nil {
			if _, ok := UnitPeriod(rls.RateLimitResponse_RateLimit_Unit(o.Unit)); !ok {
				return nil, invalid(fmt.Sprintf("descriptors[%d].limit.unit: unknown unit %v (want one of %s)", i, o.Unit, unitNames))
			}
		}
		h := uint64(max(req.HitsAddend, 1))
		if d.HitsAddend != nil && d.HitsAddend.Value > 0 {
			h = d.HitsAddend.Value
		}
		if h > bucket.MaxTokens {
			return nil, invalid(fmt.Sprintf("descriptors[%d].hits_addend: must be at most %d, got %d", i, uint64(bucket.MaxTokens), h))
		}
		hits[i] = int64(h)
	}
	return hits, nil
}

func invalid(msg string) error { return status.Error(codes.InvalidArgument, msg) }

// fail maps the node's errors to gRPC statuses.
func (s *Service) fail(err error) error {
	switch {
	case status.Code(err) != codes.Unknown:
		return err // already a status
	case errors.Is(err, cluster.ErrNotReady):
		return status.Error(codes.Unavailable, "sluice node not ready")
	case errors.As(err, new(*rules.FieldError)):
		// The rules changed between match and check (a reload): retry.
		return status.Error(codes.Unavailable, "rate limit configuration is being reloaded; retry")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.cfg.Logger.Error("envoy rate limit check failed", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// headers are the RateLimit headers of the status closest to its limit (an
// over-limit one first), as envoyproxy/ratelimit writes them.
func headers(sts []*rls.RateLimitResponse_DescriptorStatus) []*core.HeaderValue {
	var pick *rls.RateLimitResponse_DescriptorStatus
	for _, st := range sts {
		if st.CurrentLimit == nil {
			continue
		}
		over := st.Code == rls.RateLimitResponse_OVER_LIMIT
		if pick == nil || (over && pick.Code != rls.RateLimitResponse_OVER_LIMIT) ||
			(over == (pick.Code == rls.RateLimitResponse_OVER_LIMIT) && st.LimitRemaining < pick.LimitRemaining) {
			pick = st
		}
	}
	if pick == nil {
		return nil
	}
	reset := int64(0)
	if d := pick.DurationUntilReset; d != nil {
		reset = d.Seconds
		if d.Nanos > 0 {
			reset++
		}
	}
	return []*core.HeaderValue{
		{Key: "RateLimit-Limit", Value: fmt.Sprint(pick.CurrentLimit.RequestsPerUnit)},
		{Key: "RateLimit-Remaining", Value: fmt.Sprint(pick.LimitRemaining)},
		{Key: "RateLimit-Reset", Value: fmt.Sprint(reset)},
	}
}

// longKey is the key of a descriptor too long to be a bucket key as it
// is: a SHA-256 digest of it, so that each long value keeps a counter of
// its own.
func longKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(sum[:])
}
