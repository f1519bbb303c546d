package gossip

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
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
// then at doubling intervals up to drainMaxPoll, and instances stopping at
// the same time share each read (profileReads): a process that holds many
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
	seen := profileReads.last() // reads from before the wait began are no answer
	for {
		var n int
		n, seen = profileReads.count(id, seen)
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

// profileReads is the process's last read of the goroutine profile.
var profileReads sharedProfile

// sharedProfile shares reads of the goroutine profile between the
// instances waiting for their goroutines to end. Reads are numbered, not
// timed (tests in synctest bubbles see other clocks than the process's).
// Reusing a read another instance made after the wait began is safe: an
// instance's labeled goroutines only ever fall to zero once (a goroutine
// takes the label from the one that starts it), so a read that is a little
// old can only delay the answer, never give a wrong zero. A read from
// before the wait began could: it may predate the instance.
type sharedProfile struct {
	mu     sync.Mutex // held while reading, so callers arriving meanwhile wait and reuse the read
	read   uint64     // the number of the last read
	counts map[string]int
}

// last returns the number of the last read, waiting for one under way.
func (p *sharedProfile) last() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.read
}

// count returns how many goroutines carry the label id, and the number of
// the read that says so: the last read if it is newer than seen (the
// caller's previous one), else a new read.
func (p *sharedProfile) count(id string, seen uint64) (int, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.read <= seen {
		p.counts = labeledGoroutines()
		p.read++
	}
	return p.counts[id], p.read
}

// labeledGoroutines counts the goroutines of each value of goroutineLabel,
// from the goroutine profile's text form: records of "N @ pc..." followed
// by a "# labels: {...}" line.
func labeledGoroutines() map[string]int {
	counts := make(map[string]int)
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		return counts
	}
	key := strconv.Quote(goroutineLabel) + ":"
	count := 0
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if n, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(n)
			continue
		}
		labels, ok := strings.CutPrefix(line, "# labels: ")
		if !ok {
			continue
		}
		_, rest, ok := strings.Cut(labels, key)
		if !ok {
			continue
		}
		if id, err := strconv.QuotedPrefix(rest); err == nil {
			if v, err := strconv.Unquote(id); err == nil {
				counts[v] += count
			}
		}
	}
	return counts
}
