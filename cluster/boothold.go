package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// bootHold bounds how long a restarted node holds its first cluster-wide
// checks while it looks for its peers (see bootGate).
const bootHold = 2 * time.Second

// bootGate holds the cluster-wide checks of a restarted node until it has
// found a peer. Alone, it would own every key and decide each from a
// bucket of its own (at its share of the stored cluster size), while the
// key's real state is at its owner, or in the other members' replicas:
// each restart of a node whose application checks a hot key would admit
// that share again. Found in the fault suite: a rolling restart of five
// sidecars gave a key limited to 12 a minute 8 to 13 tokens over its
// limit, most from the moment each new life answered before it joined.
// A join normally takes tens of milliseconds; the hold ends when the
// node's ring holds the members of the first peer state it merged (not
// before: the first members notified during the join's merge made a ring
// of three of five in the fault suite, whose owners differ from the
// cluster's, and a second owner decided the key), when a join attempt found
// nobody (the whole cluster is restarting), or after bootHold (the seed
// name does not resolve, or the peers do not answer), whichever is first.
// A node that was not restarted, or whose cluster was itself alone, never
// holds. The checks of local-mode rules never wait.
type bootGate struct {
	holding atomic.Bool
	done    chan struct{}
	once    sync.Once
}

// arm makes the gate hold until open is called, or bootHold passes.
func (g *bootGate) arm() {
	g.done = make(chan struct{})
	g.holding.Store(true)
	time.AfterFunc(bootHold, g.open)
}

// open ends the hold, once.
func (g *bootGate) open() {
	if g.done == nil {
		return
	}
	g.once.Do(func() {
		g.holding.Store(false)
		close(g.done)
	})
}

// settle holds the cluster-wide checks among cs while the gate holds, then
// routes them again with the ring the node has then: one atomic load when
// the gate is open. Its error is ctx's, if the caller left.
func (n *Node) settle(ctx context.Context, cs []check) error {
	if !n.gate.holding.Load() {
		return nil
	}
	wait := false
	for i := range cs {
		wait = wait || cs[i].route != routeLocal
	}
	if !wait {
		return nil
	}
	select {
	case <-n.gate.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	topo := n.topo.Load()
	for i := range cs {
		cs[i].topo = topo
		cs[i].route = routeOf(cs[i].mode, topo)
	}
	return nil
}

// settleOne is settle for a single check.
func (n *Node) settleOne(ctx context.Context, c *check) error {
	if !n.gate.holding.Load() {
		return nil
	}
	one := []check{*c}
	if err := n.settle(ctx, one); err != nil {
		return err
	}
	*c = one[0]
	return nil
}
