package bucket

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var perSecond = Limit{Rate: 10, Period: time.Second, Burst: 10}

func TestStoreKeepsBucketsApart(t *testing.T) {
	s := NewStore(StoreConfig{})
	a := ID{Rule: "api", Key: "alice"}
	b := ID{Rule: "api", Key: "bob"}
	otherRule := ID{Rule: "login", Key: "alice"}
	inline := ID{Inline: perSecond, Key: "alice"}
	inline2 := ID{Inline: Limit{Rate: 20, Period: time.Second, Burst: 10}, Key: "alice"}
	s.AllowN(t0, a, perSecond, 10)
	for _, id := range []ID{b, otherRule, inline, inline2} {
		if d := s.AllowN(t0, id, perSecond, 10); !d.Allowed {
			t.Fatalf("%+v shares a bucket with %+v", id, a)
		}
	}
	if d := s.AllowN(t0, a, perSecond, 1); d.Allowed {
		t.Fatalf("bucket %+v was not kept: %+v", a, d)
	}
	if n := s.Len(); n != 5 {
		t.Fatalf("Len = %d, want 5", n)
	}
}

func TestStoreDoesNotStoreUntouchedBuckets(t *testing.T) {
	s := NewStore(StoreConfig{})
	s.AllowN(t0, ID{Key: "peek"}, perSecond, 0)
	s.AllowN(t0, ID{Key: "huge"}, perSecond, 11)
	if d := s.Peek(t0, ID{Key: "p"}, perSecond, 3); !d.Allowed || d.Remaining != 7 {
		t.Fatalf("peek: %+v", d)
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len = %d after peeks and a denial, want 0", n)
	}
}

func TestStoreBoundEvictsFullFirstThenLRU(t *testing.T) {
	s := NewStore(StoreConfig{MaxKeys: 8, Shards: 1})
	slow := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	fast := Limit{Rate: 1, Period: time.Millisecond, Burst: 1}
	for i := range 7 {
		s.AllowN(t0, ID{Key: "slow" + strconv.Itoa(i)}, slow, 1)
	}
	s.AllowN(t0, ID{Key: "fast"}, fast, 1) // most recent, but full again 1 ms later
	s.AllowN(t1, ID{Key: "new1"}, slow, 1)
	if s.Evictions() != 0 {
		t.Fatalf("evicted a live bucket while a full one was there")
	}
	if s.Len() != 8 {
		t.Fatalf("Len = %d, want 8", s.Len())
	}
	// No full bucket left: the least recently used one (slow0) goes.
	s.AllowN(t1, ID{Key: "slow1"}, slow, 0) // touch slow1
	s.AllowN(t1, ID{Key: "new2"}, slow, 1)
	if s.Evictions() != 1 || s.Len() != 8 {
		t.Fatalf("evictions %d, len %d; want 1, 8", s.Evictions(), s.Len())
	}
	if d := s.AllowN(t1, ID{Key: "slow0"}, slow, 1); !d.Allowed {
		t.Fatalf("slow0 should have been evicted (and so start full again)")
	}
	if d := s.AllowN(t1, ID{Key: "slow1"}, slow, 1); d.Allowed {
		t.Fatalf("slow1 was recently used and must not have been evicted")
	}
}

func TestStoreSweep(t *testing.T) {
	s := NewStore(StoreConfig{})
	for i := range 100 {
		l := perSecond
		if i%2 == 0 {
			l = Limit{Rate: 1, Period: time.Hour, Burst: 10}
		}
		s.AllowN(t0, ID{Key: strconv.Itoa(i)}, l, 1)
	}
	if n := s.Sweep(t0.Add(50 * time.Millisecond)); n != 0 {
		t.Fatalf("swept %d buckets that were not full", n)
	}
	if n := s.Sweep(t0.Add(time.Second)); n != 50 {
		t.Fatalf("swept %d, want 50", n)
	}
	if s.Len() != 50 {
		t.Fatalf("Len = %d, want 50", s.Len())
	}
}

// TestStoreConcurrentExact spends from one bucket from many goroutines and
// checks that exactly the burst was admitted.
func TestStoreConcurrentExact(t *testing.T) {
	s := NewStore(StoreConfig{})
	l := Limit{Rate: 1, Period: time.Hour, Burst: 500}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if s.AllowN(t0, ID{Key: "hot"}, l, 1).Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != 500 {
		t.Fatalf("admitted %d, want exactly 500", got)
	}
}

func BenchmarkStoreAllowNOneKey(b *testing.B) {
	s := NewStore(StoreConfig{})
	id := ID{Rule: "api", Key: "user:12345"}
	l := Limit{Rate: 1_000_000_000, Period: time.Second, Burst: 1000}
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		s.AllowN(now, id, l, 1)
	}
}

// BenchmarkStoreAllowNParallel1M checks over a million distinct keys from
// every core.
func BenchmarkStoreAllowNParallel1M(b *testing.B) {
	const n = 1 << 20
	s := NewStore(StoreConfig{MaxKeys: n})
	ids := make([]ID, n)
	for i := range ids {
		ids[i] = ID{Rule: "api", Key: "user:" + strconv.Itoa(i)}
	}
	l := Limit{Rate: 100, Period: time.Second, Burst: 100}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(1) * 7919
		for pb.Next() {
			i = i*6364136223846793005 + 1442695040888963407
			s.AllowN(t0, ids[(i>>20)%n], l, 1)
		}
	})
}

// BenchmarkStoreBytesPerKey reports the heap held per stored bucket, with
// 24-byte keys under a named rule.
func BenchmarkStoreBytesPerKey(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = "user:" + strconv.FormatInt(int64(1e18)+int64(i), 10) // 24 bytes
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewStore(StoreConfig{MaxKeys: n})
		for _, k := range keys {
			s.AllowN(t0, ID{Rule: "api", Key: k}, perSecond, 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/key")
		runtime.KeepAlive(s)
		runtime.KeepAlive(keys)
	}
}

func TestTakeAndMergeNeverMint(t *testing.T) {
	from, to := NewStore(StoreConfig{}), NewStore(StoreConfig{})
	l := Limit{Rate: 10, Period: time.Second, Burst: 10}
	from.AllowN(t0, ID{Key: "moving"}, l, 7)  // 3 left
	from.AllowN(t0, ID{Key: "staying"}, l, 7) // stays
	from.AllowN(t0, ID{Key: "full"}, l, 0)    // not stored at all
	moved := from.Take(t1, func(id ID) bool { return id.Key != "staying" })
	if len(moved) != 1 || moved[0].ID.Key != "moving" || moved[0].Tokens != 4 {
		t.Fatalf("taken %+v, want the moving bucket with 4 tokens (3 + 100ms of refill)", moved)
	}
	if from.Len() != 1 {
		t.Fatalf("%d buckets left, want 1", from.Len())
	}
	// The receiver already serves the key and has spent more: its lower
	// level stays.
	to.AllowN(t1, ID{Key: "moving"}, l, 9)
	to.Merge(t1, moved[0])
	if d := to.Peek(t1, ID{Key: "moving"}, l, 0); d.Remaining != 1 {
		t.Fatalf("after merge %d remaining, want 1 (the lower level)", d.Remaining)
	}
	// A fresh receiver takes the handed-over level, refilling from its own
	// clock from then on.
	fresh := NewStore(StoreConfig{})
	fresh.Merge(t2, moved[0])
	if d := fresh.Peek(t2, ID{Key: "moving"}, l, 0); d.Remaining != 4 {
		t.Fatalf("fresh receiver %d remaining, want 4", d.Remaining)
	}
	if d := fresh.Peek(t3, ID{Key: "moving"}, l, 0); d.Remaining != 5 {
		t.Fatalf("100ms later %d remaining, want 5", d.Remaining)
	}
}

// TestDebitIntoDebt: tokens spent by peers go into debt, and refill pays
// the debt before anything is admitted again.
func TestDebitIntoDebt(t *testing.T) {
	s := NewStore(StoreConfig{})
	id := ID{Rule: "r", Key: "k"}
	t0 := time.Unix(0, 0)
	s.DebitN(t0, id, perSecond, 25) // 10 held, 25 spent elsewhere: 15 in debt
	if d := s.Peek(t0, id, perSecond, 1); d.Allowed || d.Remaining != 0 {
		t.Fatalf("in debt: %+v", d)
	}
	// 15 tokens of refill (1.5 s) pay the debt; the next token is at 1.6 s.
	if d := s.AllowN(t0.Add(1500*time.Millisecond), id, perSecond, 1); d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("debt paid, nothing earned yet: %+v", d)
	}
	if d := s.AllowN(t0.Add(1600*time.Millisecond), id, perSecond, 1); !d.Allowed {
		t.Fatalf("after the debt: %+v", d)
	}
}

func TestLevelsCopiesWithoutChanging(t *testing.T) {
	s := NewStore(StoreConfig{})
	t0 := time.Unix(0, 0)
	for i := range 5 {
		s.AllowN(t0, ID{Key: strconv.Itoa(i)}, perSecond, int64(i+1))
	}
	levels := s.Levels(t0, 3)
	if len(levels) != 3 || s.Len() != 5 {
		t.Fatalf("%d levels (want 3), %d buckets left (want 5)", len(levels), s.Len())
	}
	for _, e := range levels {
		if e.Tokens >= perSecond.Burst {
			t.Fatalf("a full bucket was copied: %+v", e)
		}
	}
	other := NewStore(StoreConfig{})
	if !other.Merge(t0, levels[0]) || other.Merge(t0, Entry{ID: levels[0].ID, Limit: perSecond, Tokens: perSecond.Burst}) {
		t.Fatal("Merge must take a lower level and report it, and keep the lower one against a higher")
	}
}

// TestStoreDelete: a deleted bucket starts full again; deleting one the
// store does not hold reports false.
func TestStoreDelete(t *testing.T) {
	s := NewStore(StoreConfig{})
	now := time.Unix(1_800_000_000, 0)
	id := ID{Rule: "r", Key: "k"}
	l := Limit{Rate: 2, Period: time.Hour, Burst: 2}
	s.AllowN(now, id, l, 2)
	if d := s.AllowN(now, id, l, 1); d.Allowed {
		t.Fatal("spent bucket allowed a check")
	}
	if !s.Delete(id) || s.Len() != 0 {
		t.Fatalf("Delete of a held bucket: store holds %d", s.Len())
	}
	if d := s.AllowN(now, id, l, 2); !d.Allowed {
		t.Fatal("a deleted bucket did not start full")
	}
	if s.Delete(ID{Key: "other"}) {
		t.Fatal("Delete of a bucket never held reported true")
	}
}
