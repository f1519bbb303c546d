package testcluster

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestAutoShrinkIntoGossipNoFreshBurst: nine nodes route a hot key to its
// owner (auto mode above eight members); one leaves gracefully at 20 s and
// the cluster gossips. A node that decided the key before the owner's copy
// of its bucket arrived made a full replica of it: 557–561 admitted in the
// second after the switch, in about one run of three (1.13× the bound over
// the run). Now such a node seeds the replica from what it knows of the
// key (empty: it checked the key at the lease threshold), and the band
// holds in every slice.
func TestAutoShrinkIntoGossipNoFreshBurst(t *testing.T) {
	for range 3 {
		synctest.Test(t, func(t *testing.T) {
			c := New(t, 9)
			c.AwaitConverged(joinBound, c.All()...)
			h := hammer(c, rules.SyncAuto, "abuser", abuseLimit, 1000, time.Minute, 10*time.Second, c.All(), func() {
				time.Sleep(20 * time.Second)
				c.Stop(8)
			})
			hotKeyBand(t, "9 nodes, auto, 1000×, one leaves at 20 s", h, abuseLimit, time.Minute, 10*time.Second)
		})
	}
}

// TestAutoCutOffNodeEntersGossipAtItsShare: nine nodes in auto mode (owner
// mode), one cut off from the others from 10 s to 40 s, longer than
// failure detection. The cut-off node falls back to its fair share; when
// memberlist declares a first peer dead it is at eight members and begins
// to gossip. It had heard no peer (no heartbeats in owner mode) and held
// no replica of the key: it counted no one silent and spent a full,
// fresh replica alone, ~530 tokens in 2 s (1.47–1.57× the bound over the
// run). Now every peer not heard yet is silent after silentAfter once
// heartbeats are expected, and the replica starts from the node's fair
// share's level: the run stays within the band overall, and no 10 s slice
// admits more than 15% over what it earned (the split and the switch
// cost a few tokens each: slices 2 and 4 read 104–109). Below is looser:
// some seconds after the heal the key stalls for two or three (slice 6:
// 71–97 of 100), which is not explained yet; the bound holds it at 30%
// under.
func TestAutoCutOffNodeEntersGossipAtItsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 9)
		c.AwaitConverged(joinBound, c.All()...)
		d, slice := time.Minute, 10*time.Second
		h := hammer(c, rules.SyncAuto, "abuser", abuseLimit, 1000, d, slice, c.All(), func() {
			time.Sleep(10 * time.Second)
			c.Partition([]int{0, 1, 2, 3, 4, 5, 6, 7}, []int{8})
			time.Sleep(30 * time.Second)
			c.Heal()
		})
		want := abuseLimit.Burst + int64(float64(abuseLimit.Rate)*d.Seconds()/abuseLimit.Period.Seconds())
		got := h.admitted.Load()
		t.Logf("%d admitted of %d (%.3f×); per %v slice %v", got, want, float64(got)/float64(want), slice, h.slices)
		if n := h.failed.Load(); n > 0 {
			t.Errorf("%d checks failed", n)
		}
		if r := float64(got) / float64(want); r < 0.95 || r > 1.05 {
			t.Errorf("admitted %d, %.3f× burst + rate × elapsed (%d): want within [0.95, 1.05]", got, r, want)
		}
		perSlice := float64(abuseLimit.Rate) * slice.Seconds() / abuseLimit.Period.Seconds()
		for i, s := range h.slices[1:] {
			if r := float64(s) / perSlice; r < 0.70 || r > 1.15 {
				t.Errorf("slice %d admitted %d, %.2f× what it earned: want within [0.70, 1.15]", i+2, s, r)
			}
		}
	})
}
