package transport

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluicerl/sluice/cluster"
)

// TestStatusRates: the status carries the node's per-second counts as
// they are, with their end once there is one.
func TestStatusRates(t *testing.T) {
	st := NewStatus(cluster.Status{Rates: cluster.Rates{Checks: []uint64{1, 2}, Denied: []uint64{0, 1}, Fallbacks: []uint64{0, 0}}})
	b, _ := json.Marshal(st.Rates)
	if got, want := string(b), `{"checks":[1,2],"denied":[0,1],"fallbacks":[0,0]}`; got != want {
		t.Fatalf("rates before the first second %s, want %s", got, want)
	}
	end := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	st = NewStatus(cluster.Status{Rates: cluster.Rates{End: end.Local()}})
	if st.Rates.End == nil || !st.Rates.End.Equal(end) || st.Rates.End.Location() != time.UTC {
		t.Fatalf("rates end %v, want %v in UTC", st.Rates.End, end)
	}
}

// TestStatusPageSelfContained: the page loads nothing from anywhere, so
// that it works offline and under its Content-Security-Policy.
func TestStatusPageSelfContained(t *testing.T) {
	page := strings.ReplaceAll(string(statusPage), `"http://www.w3.org/2000/svg"`, "") // a namespace, never fetched
	for _, re := range []string{`(?i)\b(src|href)\s*=`, `(?i)url\(`, `(?i)@import`, `(?i)https?://`, `(?i)<link\b`, `(?i)<iframe\b`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("the status page refers to something outside it: %q", m)
		}
	}
}
