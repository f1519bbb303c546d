package testcluster

import (
	"fmt"
	"slices"
	"time"

	"github.com/sluicerl/sluice/gossip"
)

// pollInterval is how often Await checks its condition, in (virtual) time.
const pollInterval = 50 * time.Millisecond

// Await waits until cond holds, checking every 50ms, and returns how long
// that took. If it does not hold within the given time, the test fails
// with what and the cluster's state.
func (c *Cluster) Await(within time.Duration, what string, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			c.t.Fatalf("testcluster: %s: not within %v\n%s", what, within, c.Describe())
		}
		time.Sleep(pollInterval)
	}
	return time.Since(start)
}

// Alive returns the names of the members node i sees alive.
func (c *Cluster) Alive(i int) []string {
	var out []string
	for _, m := range c.nodes[i].Node.Members() {
		if m.State == gossip.StateAlive {
			out = append(out, m.Name)
		}
	}
	return out
}

// StateOf returns the state node observer sees node target in, and whether
// it knows target at all.
func (c *Cluster) StateOf(observer, target int) (gossip.State, bool) {
	for _, m := range c.nodes[observer].Node.Members() {
		if m.Name == c.nodes[target].Name {
			return m.State, true
		}
	}
	return 0, false
}

// Converged reports whether each of the given nodes sees exactly the given
// nodes alive, and has rebuilt its ring from them: a node's ring follows
// its membership a moment later, and until then it decides keys as their
// owner under the older view.
func (c *Cluster) Converged(nodes ...int) bool {
	var want []string
	for _, i := range nodes {
		want = append(want, c.nodes[i].Name)
	}
	slices.Sort(want)
	for _, i := range nodes {
		if !slices.Equal(c.Alive(i), want) {
			return false
		}
		ring := c.nodes[i].Node.RingMembers()
		slices.Sort(ring)
		if !slices.Equal(ring, want) {
			return false
		}
	}
	return true
}

// AwaitConverged waits until each of the given nodes sees exactly them alive.
func (c *Cluster) AwaitConverged(within time.Duration, nodes ...int) time.Duration {
	c.t.Helper()
	return c.Await(within, fmt.Sprintf("nodes %v converge", nodes), func() bool { return c.Converged(nodes...) })
}

// AwaitState waits until every observer sees target in state s.
func (c *Cluster) AwaitState(within time.Duration, target int, s gossip.State, observers ...int) time.Duration {
	c.t.Helper()
	return c.Await(within, fmt.Sprintf("nodes %v see %s %s", observers, c.nodes[target].Name, s), func() bool {
		for _, o := range observers {
			if got, ok := c.StateOf(o, target); !ok || got != s {
				return false
			}
		}
		return true
	})
}

// Counter returns the value of a counter or gauge (summed over its series with the
// given label value, or all series if value is "") in node i's current life.
func (c *Cluster) Counter(i int, name, value string) float64 {
	c.t.Helper()
	mfs, err := c.nodes[i].Registry.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := value == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetValue() == value
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// Describe returns every running node's view, for failure messages.
func (c *Cluster) Describe() string {
	var b []byte
	for _, i := range c.Running() {
		b = fmt.Appendf(b, "  %s sees:", c.nodes[i].Name)
		for _, m := range c.nodes[i].Node.Members() {
			b = fmt.Appendf(b, " %s=%s", m.Name, m.State)
		}
		b = append(b, '\n')
	}
	return string(b)
}
