package gossip

import (
	"sync"
	"testing"
)

// TestLabeledGoroutinesCountsEachInstance checks the profile parsing that
// awaitDrained relies on: goroutines started under an instance's label, and
// those they start, count for that instance only, and a read shared with
// another waiter still sees a drained instance as drained.
func TestLabeledGoroutinesCountsEachInstance(t *testing.T) {
	a, b := newInstanceID(), newInstanceID()
	release := make(chan struct{})
	var started sync.WaitGroup
	start := func(id string, n int) {
		started.Add(2 * n)
		labeled(id, func() {
			for range n {
				go func() {
					go func() { started.Done(); <-release }() // inherits the label
					started.Done()
					<-release
				}()
			}
		})
	}
	start(a, 3)
	start(b, 1)
	started.Wait()

	counts := labeledGoroutines()
	if counts[a] != 6 || counts[b] != 2 {
		t.Fatalf("counts %v: want 6 for %s and 2 for %s", counts, a, b)
	}
	seen := profileReads.last() // what an earlier waiter read is old news here
	n, first := profileReads.count(a, seen)
	if n != 6 {
		t.Fatalf("count(%s) = %d, want 6", a, n)
	}
	if n, read := profileReads.count(b, seen); n != 2 || read != first {
		t.Fatalf("count(%s) = %d from read %d, want 2 from the shared read %d", b, n, read, first)
	}
	close(release)
	if err := awaitDrained(a); err != nil {
		t.Fatal(err)
	}
	if err := awaitDrained(b); err != nil {
		t.Fatal(err)
	}
}
