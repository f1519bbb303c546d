package bucket

import (
	"errors"
	"testing"
	"time"
)

func TestLimitValidate(t *testing.T) {
	ok := Limit{Rate: 10, Period: time.Second, Burst: 20}
	for _, tc := range []struct {
		name  string
		limit Limit
		field string // "" when valid
	}{
		{"token bucket", ok, ""},
		{"window, burst = rate", Limit{Rate: 10, Period: time.Minute, Burst: 10, Algo: FixedWindow}, ""},
		{"log at its cap", Limit{Rate: MaxLogRate, Period: time.Second, Burst: MaxLogRate, Algo: SlidingWindowLog}, ""},
		{"bounds", Limit{Rate: MaxTokens, Period: MaxPeriod, Burst: MaxTokens}, ""},
		{"zero rate", Limit{Period: time.Second, Burst: 1}, "rate"},
		{"rate over MaxTokens", Limit{Rate: MaxTokens + 1, Period: time.Second, Burst: 1}, "rate"},
		{"log over its cap", Limit{Rate: MaxLogRate + 1, Period: time.Second, Burst: MaxLogRate + 1, Algo: SlidingWindowLog}, "rate"},
		{"period under 1ms", Limit{Rate: 1, Period: time.Microsecond, Burst: 1}, "period"},
		{"period over a year", Limit{Rate: 1, Period: MaxPeriod + 1, Burst: 1}, "period"},
		{"zero burst", Limit{Rate: 1, Period: time.Second}, "burst"},
		{"burst over MaxTokens", Limit{Rate: 1, Period: time.Second, Burst: MaxTokens + 1}, "burst"},
		{"window, burst ≠ rate", Limit{Rate: 10, Period: time.Minute, Burst: 3, Algo: SlidingWindow}, "burst"},
		{"unknown algorithm", Limit{Rate: 1, Period: time.Second, Burst: 1, Algo: 99}, "algorithm"},
	} {
		err := tc.limit.Validate()
		var le *LimitError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.field != "" && (!errors.As(err, &le) || le.Field != tc.field):
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.field)
		}
	}
}
