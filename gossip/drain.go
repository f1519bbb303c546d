package gossip

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// memberlist's Shutdown returns while its goroutines may still be running: a
// probe in flight waits out its timeout (up to the probe interval times the
// awareness multiplier) without looking at the shutdown signal. So that no
// goroutine outlives Run, memberlist is created under a pprof goroutine
// label, which every goroutine it starts inherits, and shutdown waits until
// the goroutine profile shows none left with that label.

const goroutineLabel = "sluice_gossip"

// drainTimeout bounds the wait; memberlist's longest wait (a probe at the
// maximum awareness multiplier, or a stream at its TCP timeout) is shorter.
const drainTimeout = 30 * time.Second

var instances atomic.Uint64

// newInstanceID returns a label value unique in this process.
func newInstanceID() string { return strconv.FormatUint(instances.Add(1), 10) }

// labeled runs f with this instance's goroutine label, so that every
// goroutine f starts carries it.
func labeled(id string, f func()) {
	pprof.Do(context.Background(), pprof.Labels(goroutineLabel, id), func(context.Context) { f() })
}

// Reading the goroutine profile costs time in proportion to every goroutine
// of the process, so awaitDrained polls it first after drainFirstPoll and
// then at doubling intervals up to drainMaxPoll: a process that holds many
// nodes (testcluster runs thousands) and stops many at once would
// otherwise spend most of its time reading profiles.
const (
	drainFirstPoll = 20 * time.Millisecond
	drainMaxPoll   = 320 * time.Millisecond
)

// awaitDrained waits until no goroutine labeled id is left, or drainTimeout
// passes; it returns an error naming how many are left in that case.
func awaitDrained(id string) error {
	deadline := time.Now().Add(drainTimeout)
	poll := drainFirstPoll
	for {
		n := labeledGoroutines(id)
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gossip: %d memberlist goroutines still running %v after shutdown", n, drainTimeout)
		}
		time.Sleep(poll)
		poll = min(2*poll, drainMaxPoll)
	}
}

// labeledGoroutines counts the goroutines carrying the label id, from the
// goroutine profile's text form: records of "N @ pc..." followed by a
// "# labels: {...}" line.
func labeledGoroutines(id string) int {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return 0
	}
	want := strconv.Quote(goroutineLabel) + ":" + strconv.Quote(id)
	total, count := 0, 0
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if n, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(n)
			continue
		}
		if labels, ok := strings.CutPrefix(line, "# labels: "); ok && strings.Contains(labels, want) {
			total += count
		}
	}
	return total
}
