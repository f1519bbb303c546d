package testcluster

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/rules"
)

// TestStoredSizeFromTheFutureIsBounded: a node stores its cluster's size
// with the wall-clock time. A size stored "in the future" (the clock was
// fast and has since been stepped back by NTP, or a VM was restored from
// a snapshot) is not trusted. Three nodes; 1 and 2 are gone for good;
// node 0's data directory says 3 members, stored 1 h ahead of its clock:
// alone, it decides at the whole limit, not at 1/3 for over an hour.
func TestStoredSizeFromTheFutureIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 3, Options{Persist: true})
		c.AwaitConverged(joinBound, c.All()...)
		c.Kill(1)
		c.Kill(2)
		c.Stop(0)
		p, err := rules.OpenPersist(c.Member(0).DataDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SaveClusterSize(3, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		c.Start(0)
		time.Sleep(10 * time.Minute)
		share := c.Counter(0, "sluice_partition_share", "")
		t.Logf("10 m after a start with a size stored 1 h ahead of the clock: node 0 (alone) at share %.3f", share)
		if share < 1 {
			t.Errorf("share %.3f 10 m after the start: the stored size outlived the 5 m window", share)
		}
	})
}
