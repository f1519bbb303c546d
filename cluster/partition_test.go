package cluster

import (
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
)

func TestRememberedCountsRecentFailuresOnly(t *testing.T) {
	now := time.Unix(1000, 0)
	members := []gossip.Member{
		{Name: "self", State: gossip.StateAlive, Self: true},
		{Name: "b", State: gossip.StateAlive},
		{Name: "c", State: gossip.StateDead, Since: now.Add(-time.Minute)},
		{Name: "d", State: gossip.StateDead, Since: now.Add(-4 * time.Minute)},
		{Name: "e", State: gossip.StateDead, Since: now.Add(-6 * time.Minute)}, // aged out
		{Name: "f", State: gossip.StateLeft, Since: now},                       // said goodbye: a scale-down
	}
	learned := map[string]time.Time{
		"g": now.Add(2 * time.Minute), // a peer says it is missing on its side
		"b": now.Add(3 * time.Minute), // alive here: not missing
		"f": now.Add(3 * time.Minute), // left here: not missing
		"h": now.Add(-time.Second),    // aged out
	}
	n, next := remembered(2, missingMembers(members, learned, now, 5*time.Minute))
	if n != 5 {
		t.Errorf("with what peers said: remembered %d members, want 5 (2 alive, c and d failed here, g missing there)", n)
	}
	n, next = remembered(2, missingMembers(members, nil, now, 5*time.Minute))
	if n != 4 {
		t.Errorf("remembered %d members, want 4 (2 alive, 2 failed within the window)", n)
	}
	if want := now.Add(time.Minute); !next.Equal(want) {
		t.Errorf("next expiry %v, want %v (d ages out first)", next, want)
	}
	if n, next := remembered(2, missingMembers(members, learned, now, -1)); n != 2 || !next.IsZero() {
		t.Errorf("window off: remembered %d (next %v), want 2 and no expiry", n, next)
	}
}

func TestSideShare(t *testing.T) {
	tb := bucket.Limit{Rate: 200, Period: time.Second, Burst: 200}
	cases := []struct {
		name              string
		l                 bucket.Limit
		alive, remembered int64
		want              bucket.Limit
	}{
		{"whole cluster", tb, 5, 5, tb},
		{"2 of 5, exact rate", tb, 2, 5, bucket.Limit{Rate: 80, Period: time.Second, Burst: 80}},
		{"1 of 3, longer period", bucket.Limit{Rate: 100, Period: time.Second, Burst: 10}, 1, 3,
			bucket.Limit{Rate: 100, Period: 3 * time.Second, Burst: 3}},
		{"burst at least 1", bucket.Limit{Rate: 1, Period: time.Second, Burst: 1}, 1, 4,
			bucket.Limit{Rate: 1, Period: 4 * time.Second, Burst: 1}},
		{"period past the maximum: rate rounded down", bucket.Limit{Rate: 10, Period: bucket.MaxPeriod, Burst: 10}, 1, 3,
			bucket.Limit{Rate: 3, Period: bucket.MaxPeriod, Burst: 3}},
		{"window keeps its alignment", bucket.Limit{Rate: 10, Period: time.Minute, Burst: 10, Algo: bucket.FixedWindow}, 2, 3,
			bucket.Limit{Rate: 6, Period: time.Minute, Burst: 6, Algo: bucket.FixedWindow}},
	}
	for _, c := range cases {
		got := sideShare(c.l, c.alive, c.remembered)
		if got != c.want {
			t.Errorf("%s: sideShare(%+v, %d, %d) = %+v, want %+v", c.name, c.l, c.alive, c.remembered, got, c.want)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: share not valid: %v", c.name, err)
		}
	}
	// The sides of any split together never exceed the limit.
	for m := int64(2); m <= 9; m++ {
		for a := int64(1); a < m; a++ {
			x, y := sideShare(tb, a, m), sideShare(tb, m-a, m)
			perSec := func(l bucket.Limit) float64 { return float64(l.Rate) / l.Period.Seconds() }
			if perSec(x)+perSec(y) > perSec(tb)+1e-9 || x.Burst+y.Burst > tb.Burst {
				t.Errorf("split %d|%d of %d: shares %+v and %+v exceed %+v", a, m-a, m, x, y, tb)
			}
		}
	}
}

func TestBootMemoryLastsUntilThePeersAreFound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := bootMemory{size: 5, until: t0.Add(5 * time.Minute)}
	if n, _ := b.remembered(1, false, t0); n != 5 {
		t.Fatalf("alone after a restart: remembered %d, want the stored 5", n)
	}
	if n, until := b.remembered(2, false, t0.Add(time.Second)); n != 5 || !until.Equal(t0.Add(time.Second+joinSettle)) {
		t.Fatalf("first peer found: remembered %d until %v, want 5 until a state exchange later", n, until)
	}
	if n, _ := b.remembered(3, false, t0.Add(time.Second+joinSettle)); n != 0 {
		t.Fatalf("a state exchange after the first peer: remembered %d, want the memory over", n)
	}
	b = bootMemory{size: 5, until: t0.Add(5 * time.Minute)}
	if n, _ := b.remembered(3, true, t0); n != 0 {
		t.Fatalf("a peer's state arrived (the cluster may have shrunk): remembered %d, want the memory over", n)
	}
	b = bootMemory{size: 5, until: t0.Add(5 * time.Minute)}
	if n, _ := b.remembered(5, false, t0); n != 0 {
		t.Fatalf("every stored member alive: remembered %d, want the memory over", n)
	}
	b = bootMemory{size: 5, until: t0.Add(5 * time.Minute)}
	if n, _ := b.remembered(1, false, t0.Add(5*time.Minute)); n != 0 {
		t.Fatalf("the window passed alone: remembered %d, want the memory over", n)
	}
}
