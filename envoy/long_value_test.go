package envoy

import (
	"strings"
	"testing"
)

// TestLongDescriptorValueDoesNotLiftTheOtherLimits: Envoy builds
// descriptors from what the client sends (":path" with its query string,
// request headers), and sends every descriptor of a stage in one call. A
// descriptor that matches a limit and whose entries escape to more than
// ~1 KiB makes sluice answer the whole call INVALID_ARGUMENT; Envoy with
// failure_mode_deny false (its default, and docs/envoy.md's snippets) then
// lets the request through, so a client that appends a long query string
// is no longer limited by any descriptor of the call, its per-address
// limit included. envoyproxy/ratelimit counts such values (a Redis key has
// no such bound). Here the per-address limit is 2 a minute; the calls
// carry a 1.5 KiB path.
func TestLongDescriptorValueDoesNotLiftTheOtherLimits(t *testing.T) {
	h := newHarness(t, `
domain: web
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: path
    rate_limit: {unit: minute, requests_per_unit: 1000}
`)
	path := "/search?q=" + strings.Repeat("a", 1500)
	over := 0
	for i := range 5 {
		resp, err := h.try("web", 0, desc("remote_address", "203.0.113.7"), desc("path", path))
		if err != nil {
			t.Fatalf("call %d with a 1.5 KiB path: %v (Envoy fails open: the address's limit of 2 a minute is lifted)", i+1, err)
		}
		if resp.OverallCode.String() == "OVER_LIMIT" {
			over++
		}
	}
	if over != 3 {
		t.Fatalf("%d of 5 calls over, want 3 (2 a minute for the address)", over)
	}
}
