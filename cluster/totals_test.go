package cluster

import (
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

var totalLimit = bucket.Limit{Rate: 10, Period: time.Second, Burst: 10}

func TestTotalsApplyOnlyWhatIsNew(t *testing.T) {
	c := newTotals("", 0, 50*time.Millisecond)
	id := bucket.ID{Rule: "r", Key: "k"}
	up := func(gen uint64, total int64) *totalUpdate {
		return &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: totalLimit, Gen: gen, Total: total}
	}
	for _, step := range []struct {
		gen   uint64
		total int64
		want  int64
		why   string
	}{
		{5, 3, 3, "first news of the origin: all of it"},
		{5, 3, 0, "a duplicate"},
		{5, 7, 4, "the difference"},
		{5, 6, 0, "reordered: older than what was seen"},
		{4, 100, 0, "an older generation"},
		{6, 2, 2, "a new generation starts from zero"},
		{5, 9, 0, "the previous generation, after the new one"},
	} {
		if got := c.apply("a", up(step.gen, step.total), 0); got != step.want {
			t.Fatalf("%s: applied %d, want %d", step.why, got, step.want)
		}
	}
	// Another origin is counted apart.
	if got := c.apply("b", up(5, 3), 0); got != 3 {
		t.Fatalf("another origin: applied %d, want 3", got)
	}
}

func TestTotalsFlush(t *testing.T) {
	c := newTotals("", 1000, 50*time.Millisecond)
	id := bucket.ID{Rule: "r", Key: "k"}
	sec := int64(time.Second)
	c.add(rules.SyncGossip, id, totalLimit, 2, 0)
	c.add(rules.SyncGossip, id, totalLimit, 3, 0)
	var sent []totalUpdate
	for i := range resends + 2 {
		sent = c.flush(int64(i)*int64(10*time.Millisecond), sec, 30*sec, sent)
	}
	// Once at the next flush, once more as a repair when it stopped
	// changing, then no more.
	if len(sent) != 2 || sent[0].Total != 5 || sent[1].Total != 5 || sent[0].Gen != 1001 {
		t.Fatalf("a total is sent twice: %+v", sent)
	}
	// A total that keeps changing goes out once per flush, and is
	// repaired once after its last change.
	sent = sent[:0]
	for i := range 4 {
		c.add(rules.SyncGossip, id, totalLimit, 1, int64(i))
		sent = c.flush(int64(10+i)*int64(10*time.Millisecond), sec, 30*sec, sent)
	}
	sent = c.flush(int64(15)*int64(10*time.Millisecond), sec, 30*sec, sent)
	sent = c.flush(int64(16)*int64(10*time.Millisecond), sec, 30*sec, sent)
	if len(sent) != 5 || sent[3].Total != 9 || sent[4].Total != 9 {
		t.Fatalf("a changing total: sent %+v, want each change once and the last twice", sent)
	}
	// Idle past the limit: the record goes, and the next admission starts
	// a new generation.
	c.flush(2*sec, sec, 30*sec, nil)
	c.add(rules.SyncGossip, id, totalLimit, 1, 2*sec)
	if got := c.flush(2*sec, sec, 30*sec, nil); len(got) != 1 || got[0].Gen != 1002 || got[0].Total != 1 {
		t.Fatalf("after idling: %+v", got)
	}
}

func TestTotalsSealOldGenerations(t *testing.T) {
	c := newTotals("", 0, 50*time.Millisecond)
	id := bucket.ID{Rule: "r", Key: "k"}
	var now int64
	var total int64 // what a receiver applies
	recv := newTotals("", 0, 50*time.Millisecond)
	for range 1000 { // 10 s of admissions, one every 10 ms, flushed every 50 ms
		now += int64(10 * time.Millisecond)
		c.add(rules.SyncGossip, id, totalLimit, 1, now)
		if now%int64(50*time.Millisecond) == 0 {
			for _, u := range c.flush(now, int64(time.Second), int64(30*time.Second), nil) {
				total += recv.apply("a", &u, now)
			}
		}
	}
	for range resends {
		now += int64(50 * time.Millisecond)
		for _, u := range c.flush(now, int64(time.Second), int64(30*time.Second), nil) {
			total += recv.apply("a", &u, now)
		}
	}
	if total != 1000 {
		t.Fatalf("receiver applied %d of 1000 admissions across generations", total)
	}
	if g := c.gen.Load(); g < 5 {
		t.Fatalf("10 s of admissions used %d generations; want one per %v", g, time.Duration(maxGenAge))
	}
}

func TestTotalsAdopt(t *testing.T) {
	c := newTotals("", 0, 50*time.Millisecond)
	id := bucket.ID{Rule: "r", Key: "k"}
	c.adopt("me", rules.SyncGossip, id, []originTotal{{Origin: "a", Gen: 5, Total: 10}, {Origin: "me", Gen: 9, Total: 99}}, 0)
	if got := c.apply("a", &totalUpdate{Sync: rules.SyncGossip, ID: id, Limit: totalLimit, Gen: 5, Total: 12}, 0); got != 2 {
		t.Fatalf("after adopting a's total 10, its total 12 applied %d, want 2", got)
	}
	if seen := c.seen("me", rules.SyncGossip, id); len(seen) != 1 || seen[0].Origin != "a" {
		t.Fatalf("its own total was adopted: %+v", seen)
	}
}

// BenchmarkTotalsAdd records admissions of one hot key, as gossip mode
// does on every allowed check.
func BenchmarkTotalsAdd(b *testing.B) {
	c := newTotals("", 0, 50*time.Millisecond)
	id := bucket.ID{Rule: "api", Key: "user:12345"}
	b.ReportAllocs()
	var now int64
	for b.Loop() {
		now++
		c.add(rules.SyncGossip, id, totalLimit, 1, now)
	}
}
