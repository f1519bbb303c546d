package rules

import (
	"errors"
	"testing"

	"github.com/sluicerl/sluice/bucket"
)

// FuzzParse feeds arbitrary documents to the rules parser: no panic, and
// every rule it accepts is within the documented bounds.
func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("rules: [{name: a, limit: 1, period: 1s, descriptors: [{key: x, value: y}]}]"))
	f.Add([]byte("rules: [{name: a, limit: 9007199254740992, period: 8784h, burst: 9007199254740992}]"))
	f.Add([]byte("rules: &a [*a]"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		s, err := Parse(doc)
		if err != nil {
			return
		}
		for _, r := range s.Rules() {
			l := r.Limit
			if l.Rate <= 0 || l.Rate > bucket.MaxTokens || l.Burst <= 0 || l.Burst > bucket.MaxTokens ||
				l.Period < MinPeriod || l.Period > MaxPeriod || !validName.MatchString(r.Name) {
				t.Fatalf("accepted rule %+v", r)
			}
			if _, err := s.Get(r.Name); err != nil {
				t.Fatal(err)
			}
		}
		var fe *FieldError
		_, _, err = s.Match(map[string]string{"k": "v"})
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("match error %T", err)
		}
	})
}
