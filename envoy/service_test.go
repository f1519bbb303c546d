package envoy

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sluicerl/sluice/rules"
)

// TestNestedDescriptorCountsInItsWindow checks the documented nested match
// (source_cluster=proxy → destination_cluster=mock, 3 a minute): three
// calls pass with 2, 1, 0 left, then the call is over; every status
// carries current_limit {3, MINUTE} and the time to the end of the
// epoch-aligned minute.
func TestNestedDescriptorCountsInItsWindow(t *testing.T) {
	h := newHarness(t, exampleConfig)
	d := func() *rlcommon.RateLimitDescriptor {
		return desc("source_cluster", "proxy", "destination_cluster", "mock")
	}
	for i, w := range []want{{false, 2, 3}, {false, 1, 3}, {false, 0, 3}, {true, 0, 3}, {true, 0, 3}} {
		resp := h.call(t, "edge", 0, d())
		check(t, fmt.Sprintf("call %d", i+1), resp.Statuses[0], w)
		if got := resp.OverallCode == rls.RateLimitResponse_OVER_LIMIT; got != w.over {
			t.Fatalf("call %d: overall over=%v, want %v", i+1, got, w.over)
		}
		st := resp.Statuses[0]
		if st.CurrentLimit.Unit != rls.RateLimitResponse_RateLimit_MINUTE {
			t.Fatalf("unit %v, want MINUTE", st.CurrentLimit.Unit)
		}
		if got := st.DurationUntilReset.AsDuration(); got != 59*time.Second {
			t.Fatalf("duration_until_reset %v, want 59s (to the end of the aligned minute)", got)
		}
	}
	h.now.Add(int64(59 * time.Second)) // the next minute: a new window
	check(t, "next window", h.call(t, "edge", 0, d()).Statuses[0], want{false, 2, 3})
}

// TestKeyOnlyDescriptorCountsEachValue checks that a descriptor with a key
// and no value limits each value on its own (remote_address, 5 an hour).
func TestKeyOnlyDescriptorCountsEachValue(t *testing.T) {
	h := newHarness(t, exampleConfig)
	for i := range 7 {
		w := want{i >= 5, uint32(max(4-i, 0)), 5}
		check(t, fmt.Sprintf("call %d", i+1), h.call(t, "edge", 0, desc("remote_address", "10.9.9.9")).Statuses[0], w)
	}
	check(t, "another address", h.call(t, "edge", 0, desc("remote_address", "10.9.9.8")).Statuses[0], want{false, 4, 5})
}

// TestUnlimitedAllowListAndNoMatch checks three documented ways to pass:
// an unlimited descriptor (OK, no current_limit, remaining 2^32-1), a
// descriptor with neither limit nor children, a descriptor or domain that
// matches nothing (OK, no current_limit).
func TestUnlimitedAllowListAndNoMatch(t *testing.T) {
	h := newHarness(t, exampleConfig)
	for range 10 {
		check(t, "unlimited", h.call(t, "edge", 0, desc("remote_address", "10.0.0.1")).Statuses[0], want{false, math.MaxUint32, 0})
	}
	check(t, "allow-list entry", h.call(t, "edge", 0, desc("allowed", "x")).Statuses[0], want{})
	check(t, "no match", h.call(t, "edge", 0, desc("nothing", "x")).Statuses[0], want{})
	check(t, "unknown domain", h.call(t, "elsewhere", 0, desc("remote_address", "1.2.3.4")).Statuses[0], want{})
	check(t, "deeper than the config", h.call(t, "edge", 0, desc("remote_address", "1.2.3.4", "x", "y")).Statuses[0], want{})
}

// TestShadowModeNeverDenies checks shadow_mode: over its limit the status
// and the overall code stay OK, with current_limit and 0 remaining, and
// the node counts the would-be denial.
func TestShadowModeNeverDenies(t *testing.T) {
	h := newHarness(t, exampleConfig)
	check(t, "first", h.call(t, "edge", 0, desc("shadowed", "a")).Statuses[0], want{false, 0, 1})
	for range 3 {
		resp := h.call(t, "edge", 0, desc("shadowed", "a"))
		check(t, "over, in shadow", resp.Statuses[0], want{false, 0, 1})
		if resp.OverallCode != rls.RateLimitResponse_OK {
			t.Fatalf("overall %v, want OK", resp.OverallCode)
		}
	}
	if !strings.Contains(fmt.Sprint(h.node.Status()), "envoy.edge.shadowed") {
		t.Fatalf("the status page does not show the shadow rule: %+v", h.node.Status())
	}
}

// TestNodeShadowModeAllowsEverything checks the node-wide shadow mode (the
// reference's SHADOW_MODE): every call is OK, limits of zero included,
// and statuses still report the limits.
func TestNodeShadowModeAllowsEverything(t *testing.T) {
	h := newHarness(t, exampleConfig, withShadow())
	for range 3 {
		resp := h.call(t, "edge", 0, desc("plan", "free"), desc("blocked", "x"))
		if resp.OverallCode != rls.RateLimitResponse_OK {
			t.Fatalf("overall %v, want OK", resp.OverallCode)
		}
	}
	check(t, "plan, over but in shadow", h.call(t, "edge", 0, desc("plan", "free")).Statuses[0], want{false, 0, 2})
}

// TestHitsAddend checks the request's hits_addend (3 against 5 an hour:
// OK with 2 left, then over) and a descriptor's own, which overrides it;
// 0 or unset means 1. Unlike envoyproxy/ratelimit, a denied call spends
// nothing, so a smaller one still fits afterwards.
func TestHitsAddend(t *testing.T) {
	h := newHarness(t, exampleConfig)
	check(t, "3 hits", h.call(t, "edge", 3, desc("remote_address", "a")).Statuses[0], want{false, 2, 5})
	check(t, "3 more", h.call(t, "edge", 3, desc("remote_address", "a")).Statuses[0], want{true, 0, 5})
	check(t, "2 still fit", h.call(t, "edge", 3, withHits(desc("remote_address", "a"), 2)).Statuses[0], want{false, 0, 5})
	check(t, "descriptor hits 4", h.call(t, "edge", 1, withHits(desc("remote_address", "b"), 4)).Statuses[0], want{false, 1, 5})
	check(t, "descriptor hits 0 is the request's", h.call(t, "edge", 0, withHits(desc("remote_address", "b"), 0)).Statuses[0], want{false, 0, 5})
}

// TestLimitOverride checks a descriptor's own limit: it replaces the
// configured one for that descriptor (2 a second instead of 5 an hour) and
// counts apart from it; in an unknown domain it applies to nothing.
func TestLimitOverride(t *testing.T) {
	h := newHarness(t, exampleConfig)
	over := func() *rlcommon.RateLimitDescriptor {
		d := desc("remote_address", "c")
		d.Limit = &rlcommon.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: 1 /* SECOND */}
		return d
	}
	check(t, "override 1", h.call(t, "edge", 0, over()).Statuses[0], want{false, 1, 2})
	check(t, "override 2", h.call(t, "edge", 0, over()).Statuses[0], want{false, 0, 2})
	check(t, "override 3", h.call(t, "edge", 0, over()).Statuses[0], want{true, 0, 2})
	check(t, "configured limit untouched", h.call(t, "edge", 0, desc("remote_address", "c")).Statuses[0], want{false, 4, 5})
	check(t, "unknown domain", h.call(t, "elsewhere", 0, over()).Statuses[0], want{})
}

// TestOverOnOneSpendsNothingOnOthers checks the choice sluice makes where
// envoyproxy/ratelimit charges every descriptor: user (4 a minute) and
// plan=free (2 a minute) together; the third call is over on plan and
// user is not charged (its remaining stays 2, and a later call on user
// alone still finds 2 left).
func TestOverOnOneSpendsNothingOnOthers(t *testing.T) {
	h := newHarness(t, exampleConfig)
	pair := func() *rls.RateLimitResponse { return h.call(t, "edge", 0, desc("user", "u1"), desc("plan", "free")) }
	for i, w := range []want{{false, 3, 4}, {false, 2, 4}} {
		check(t, fmt.Sprintf("call %d user", i+1), pair().Statuses[0], w)
	}
	resp := pair()
	check(t, "call 3 user", resp.Statuses[0], want{false, 2, 4})
	check(t, "call 3 plan", resp.Statuses[1], want{true, 0, 2})
	if resp.OverallCode != rls.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("overall %v, want OVER_LIMIT", resp.OverallCode)
	}
	check(t, "user alone", h.call(t, "edge", 0, desc("user", "u1")).Statuses[0], want{false, 1, 4})
}

// TestStatusesInRequestOrder checks that statuses follow the request's
// descriptors, each with its own code, and the overall code is over if
// any is.
func TestStatusesInRequestOrder(t *testing.T) {
	h := newHarness(t, exampleConfig)
	h.call(t, "edge", 0, desc("shadowed", "x")) // unrelated
	h.call(t, "edge", 2, desc("plan", "free"))
	resp := h.call(t, "edge", 0, desc("nothing", "x"), desc("plan", "free"), desc("remote_address", "10.0.0.1"))
	check(t, "no match", resp.Statuses[0], want{})
	check(t, "plan", resp.Statuses[1], want{true, 0, 2})
	check(t, "unlimited", resp.Statuses[2], want{false, math.MaxUint32, 0})
	if resp.OverallCode != rls.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("overall %v, want OVER_LIMIT", resp.OverallCode)
	}
}

// TestReplaces checks that a limit listing another's name in replaces
// makes that one not count when both apply: plan=gold replaces per_user.
func TestReplaces(t *testing.T) {
	h := newHarness(t, exampleConfig)
	for range 6 { // past per_user's 4
		resp := h.call(t, "edge", 0, desc("user", "u3"), desc("plan", "gold"))
		check(t, "replaced per_user", resp.Statuses[0], want{})
		if resp.OverallCode != rls.RateLimitResponse_OK {
			t.Fatalf("overall %v, want OK", resp.OverallCode)
		}
	}
	check(t, "per_user alone was never charged", h.call(t, "edge", 0, desc("user", "u3")).Statuses[0], want{false, 3, 4})
}

// TestWildcardCountsEachValue checks a trailing '*' value: /api/v1/*
// matches /api/v1/items and /api/v1/orders, each its own counter, and not
// /api/v2/items.
func TestWildcardCountsEachValue(t *testing.T) {
	h := newHarness(t, exampleConfig)
	for i, w := range []want{{false, 1, 2}, {false, 0, 2}, {true, 0, 2}} {
		check(t, fmt.Sprintf("items %d", i+1), h.call(t, "edge", 0, desc("path", "/api/v1/items")).Statuses[0], w)
	}
	check(t, "orders", h.call(t, "edge", 0, desc("path", "/api/v1/orders")).Statuses[0], want{false, 1, 2})
	check(t, "v2", h.call(t, "edge", 0, desc("path", "/api/v2/items")).Statuses[0], want{})
}

// TestSharedWildcardCountsTogether checks share_threshold: all values a
// wildcard matches share one counter (files/* at 2 a minute).
func TestSharedWildcardCountsTogether(t *testing.T) {
	h := newHarness(t, exampleConfig)
	check(t, "a.pdf", h.call(t, "edge", 0, desc("file", "files/a.pdf")).Statuses[0], want{false, 1, 2})
	check(t, "b.csv", h.call(t, "edge", 0, desc("file", "files/b.csv")).Statuses[0], want{false, 0, 2})
	check(t, "c.txt", h.call(t, "edge", 0, desc("file", "files/c.txt")).Statuses[0], want{true, 0, 2})
}

// TestKeyOnlyChildOfFixedParent checks a parent with a value and no limit
// whose key-only child limits each user under that parent only.
func TestKeyOnlyChildOfFixedParent(t *testing.T) {
	h := newHarness(t, exampleConfig)
	check(t, "bob", h.call(t, "edge", 0, desc("tenant", "acme", "user", "bob")).Statuses[0], want{false, 1, 2})
	check(t, "alice", h.call(t, "edge", 0, desc("tenant", "acme", "user", "alice")).Statuses[0], want{false, 1, 2})
	check(t, "other tenant", h.call(t, "edge", 0, desc("tenant", "other", "user", "bob")).Statuses[0], want{})
}

// TestZeroLimitDeniesAndSpendsNothing checks requests_per_unit 0: every
// call is over, and nothing is spent on the request's other descriptors.
func TestZeroLimitDeniesAndSpendsNothing(t *testing.T) {
	h := newHarness(t, exampleConfig)
	resp := h.call(t, "edge", 0, desc("blocked", "x"), desc("user", "u9"))
	check(t, "blocked", resp.Statuses[0], want{true, 0, 0})
	if resp.Statuses[0].CurrentLimit == nil {
		t.Fatal("blocked: no current_limit")
	}
	check(t, "user, read only", resp.Statuses[1], want{false, 4, 4})
	check(t, "user alone", h.call(t, "edge", 0, desc("user", "u9")).Statuses[0], want{false, 3, 4})
}

// TestResponseHeaders checks response_headers_to_add when the node is
// asked for them: the RateLimit headers of the descriptor closest to its
// limit; none when not asked.
func TestResponseHeaders(t *testing.T) {
	h := newHarness(t, exampleConfig, withHeaders())
	resp := h.call(t, "edge", 0, desc("remote_address", "h"), desc("plan", "free"))
	got := map[string]string{}
	for _, hv := range resp.ResponseHeadersToAdd {
		got[hv.Key] = hv.Value
	}
	want := map[string]string{"RateLimit-Limit": "2", "RateLimit-Remaining": "1", "RateLimit-Reset": "59"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("headers %v, want %v", got, want)
	}
	plain := newHarness(t, exampleConfig)
	if resp := plain.call(t, "edge", 0, desc("plan", "free")); len(resp.ResponseHeadersToAdd) != 0 {
		t.Fatalf("headers %v when not asked", resp.ResponseHeadersToAdd)
	}
}

// TestBadInputIsInvalidArgumentAndSpendsNothing checks each refusal the
// protocol's input calls for, with the field named, and that none of them
// spent anything on the good descriptor beside the bad one.
func TestBadInputIsInvalidArgumentAndSpendsNothing(t *testing.T) {
	h := newHarness(t, exampleConfig)
	good := func() *rlcommon.RateLimitDescriptor { return desc("remote_address", "bad-input") }
	noKey := desc("", "x")
	badUnit := desc("remote_address", "y")
	badUnit.Limit = &rlcommon.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: 99}
	negative := desc("remote_address", "z")
	negative.IsNegativeHits = true
	cases := []struct {
		name   string
		domain string
		ds     []*rlcommon.RateLimitDescriptor
		field  string
	}{
		{"empty domain", "", []*rlcommon.RateLimitDescriptor{good()}, "domain"},
		{"no descriptors", "edge", nil, "descriptors"},
		{"no entries", "edge", []*rlcommon.RateLimitDescriptor{good(), {}}, "descriptors[1].entries"},
		{"entry without key", "edge", []*rlcommon.RateLimitDescriptor{good(), noKey}, "descriptors[1].entries[0].key"},
		{"overflowing hits_addend", "edge", []*rlcommon.RateLimitDescriptor{good(), withHits(desc("remote_address", "w"), 1<<60)}, "descriptors[1].hits_addend"},
		{"unknown override unit", "edge", []*rlcommon.RateLimitDescriptor{good(), badUnit}, "descriptors[1].limit.unit"},
		{"negative hits", "edge", []*rlcommon.RateLimitDescriptor{good(), negative}, "descriptors[1].is_negative_hits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.try(tc.domain, 0, tc.ds...)
			if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), tc.field+":") {
				t.Fatalf("err = %v, want INVALID_ARGUMENT naming %s", err, tc.field)
			}
		})
	}
	check(t, "good descriptor after the refusals", h.call(t, "edge", 0, good()).Statuses[0], want{false, 4, 5})
}

// TestOversizedMessageIsRefused checks the server's message limit: a
// request past it is refused before it is decoded.
func TestOversizedMessageIsRefused(t *testing.T) {
	h := newHarness(t, exampleConfig)
	_, err := h.try("edge", 0, desc("remote_address", strings.Repeat("x", 70<<10)))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want RESOURCE_EXHAUSTED", err)
	}
}

// TestNotReadyIsUnavailableAndNotServing checks that a node that is not
// ready answers UNAVAILABLE (so Envoy's failure_mode_deny decides) and
// its health service NOT_SERVING, and SERVING once ready.
func TestNotReadyIsUnavailableAndNotServing(t *testing.T) {
	h := newHarness(t, exampleConfig)
	health := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := h.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: ServiceName})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	if got := health(); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("ready: health %v, want SERVING", got)
	}
	h.ready.Store(false)
	if _, err := h.try("edge", 0, desc("remote_address", "n")); status.Code(err) != codes.Unavailable {
		t.Fatalf("not ready: err = %v, want UNAVAILABLE", err)
	}
	if got := health(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("not ready: health %v, want NOT_SERVING", got)
	}
	if _, err := h.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "other"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: err = %v, want NOT_FOUND", err)
	}
	h.ready.Store(true)
	check(t, "ready again, nothing spent meanwhile", h.call(t, "edge", 0, desc("remote_address", "n")).Statuses[0], want{false, 4, 5})
}

// TestReloadedConfigTakesEffect checks that a new configuration put in
// force (as the watcher does on a change) decides the next call.
func TestReloadedConfigTakesEffect(t *testing.T) {
	h := newHarness(t, exampleConfig)
	check(t, "before", h.call(t, "edge", 0, desc("new", "x")).Statuses[0], want{})
	cfg := mustParse(t, "domain: edge\ndescriptors:\n  - key: new\n    rate_limit: {unit: minute, requests_per_unit: 9}\n")
	set, err := h.node.Rules().With(cfg.Rules())
	if err != nil {
		t.Fatal(err)
	}
	h.node.SetRules(set)
	h.svc.SetConfig(cfg)
	check(t, "after", h.call(t, "edge", 0, desc("new", "x")).Statuses[0], want{false, 8, 9})
}

// TestAPIRuleChangesAnEnvoyLimit checks that an Envoy limit is a sluice
// rule like any other: an API rule of its name changes it, and the answer's
// current_limit says what was applied.
func TestAPIRuleChangesAnEnvoyLimit(t *testing.T) {
	h := newHarness(t, exampleConfig)
	if _, err := h.node.PutRules([]rules.Spec{{Name: "envoy.edge.remote_address", Limit: 7, Period: "1m", Algorithm: "fixed_window"}}); err != nil {
		t.Fatal(err)
	}
	st := h.call(t, "edge", 0, desc("remote_address", "api")).Statuses[0]
	check(t, "changed through the API", st, want{false, 6, 7})
	if st.CurrentLimit.Unit != rls.RateLimitResponse_RateLimit_MINUTE {
		t.Fatalf("unit %v, want MINUTE", st.CurrentLimit.Unit)
	}
}
