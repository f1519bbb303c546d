package cluster

import (
	"strconv"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// TestDeniedKeysSpaceSaving: with more keys than counters, every key
// denied more than 1/deniedCap of the time is held, its count is never
// under the truth and over it by at most its overcount; the table is
// bounded.
func TestDeniedKeysSpaceSaving(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	d := newDeniedKeys(t0)
	truth := map[string]uint64{}
	for i := range 100_000 {
		key := "heavy-" + strconv.Itoa(i%5) // 5 keys, 80% of denials
		if i%5 == 4 {
			key = "rare-" + strconv.Itoa(i) // 20,000 keys seen once
		}
		truth[key]++
		d.record(bucket.ID{Rule: "api", Key: key}, t0)
	}
	top := d.top(10, t0)
	if len(top) != 10 {
		t.Fatalf("top 10 has %d keys", len(top))
	}
	for i, k := range top[:4] {
		want := truth[k.Key]
		if k.Key[:6] != "heavy-" || k.Denied < want || k.Denied-k.Overcount > want || k.Rule != "api" {
			t.Errorf("top[%d] = %+v, true count %d: want a heavy key, counted at least its truth and at most truth+overcount", i, k, want)
		}
	}
	if n := len(d.cur.heap) + len(d.old.heap); n > 2*deniedCap {
		t.Fatalf("%d counters, bound %d", n, 2*deniedCap)
	}
}

// TestDeniedKeysWindows: counts cover the last one to two windows; a key
// not denied for two windows is gone.
func TestDeniedKeysWindows(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	d := newDeniedKeys(t0)
	a, b := bucket.ID{Key: "a"}, bucket.ID{Rule: "r", Key: "b"}
	for range 3 {
		d.record(a, t0)
	}
	t1 := t0.Add(deniedWindow)
	d.record(b, t1)
	if top := d.top(5, t1); len(top) != 2 || top[0].Key != "a" || top[0].Denied != 3 || top[1].Denied != 1 {
		t.Fatalf("after one window: %+v, want a (3) from the previous window, then b (1)", top)
	}
	t2 := t1.Add(deniedWindow)
	d.record(b, t2)
	if top := d.top(5, t2); len(top) != 1 || top[0].Key != "b" || top[0].Denied != 2 {
		t.Fatalf("after two windows: %+v, want b (2) alone", top)
	}
	if top := d.top(5, t2.Add(2*deniedWindow)); len(top) != 0 {
		t.Fatalf("after two quiet windows: %+v, want none", top)
	}
}

// BenchmarkDeniedRecord counts denials of a few hot keys among many.
func BenchmarkDeniedRecord(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	d := newDeniedKeys(now)
	ids := make([]bucket.ID, 1024)
	for i := range ids {
		ids[i] = bucket.ID{Rule: "api", Key: "user:" + strconv.Itoa(i%200)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.record(ids[i%len(ids)], now)
		i++
	}
}
