package testcluster

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluicerl/sluice/transport"
)

// TestStatusExplainsReducedShare: five nodes split 2 | 3. Within the first
// seconds (the far side silent, not yet declared dead) each side decides
// at its share (2/5, 3/5) while every member is still alive in its member
// list: the status a node serves says how many members it hears, and the
// share is those over the remembered ones.
func TestStatusExplainsReducedShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(t, 5)
		c.AwaitConverged(joinBound, c.All()...)
		time.Sleep(2 * time.Second)
		c.Partition([]int{0, 1}, []int{2, 3, 4})
		time.Sleep(1500 * time.Millisecond)
		share := c.Counter(0, "sluice_partition_share", "")
		v := transport.NewStatus(c.Node(0).Status())
		t.Logf("1.5 s into a 2 | 3 split, node 0: share %.2f; the status says %d of %d remembered members heard (share %.2f)",
			share, v.Reachable, v.Remembered, v.PartitionShare)
		if share >= 1 {
			t.Fatal("node 0 did not decide at a reduced share: nothing to show")
		}
		if v.PartitionShare != share || float64(v.Reachable)/float64(v.Remembered) != share {
			t.Errorf("the status explains the reduced share %.2f as %d of %d heard (%.2f)", share, v.Reachable, v.Remembered, v.PartitionShare)
		}
	})
}
