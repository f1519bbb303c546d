package client

import (
	"testing"
	"time"
)

// TestBackoffFullJitter checks the retry delays' ceilings: base·2^k capped
// at max, and a uniform draw below it.
func TestBackoffFullJitter(t *testing.T) {
	for _, tc := range []struct {
		draw float64
		k    int
		want time.Duration
	}{
		{0, 0, 0},
		{0.5, 0, 5 * time.Millisecond},
		{0.5, 2, 20 * time.Millisecond},
		{0.999999, 3, 79999920 * time.Nanosecond},
		{0.5, 10, 100 * time.Millisecond}, // capped at 200ms
		{0.5, 100, 100 * time.Millisecond},
	} {
		c := New(Config{Rand: func() float64 { return tc.draw }})
		if got := c.backoff(tc.k); got != tc.want {
			t.Errorf("draw %v, attempt %d: %v, want %v", tc.draw, tc.k, got, tc.want)
		}
	}
}
