package cluster

import (
	"context"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// SetRules puts the rules file's rules in force, with the API rules over
// them (an API rule replaces a file rule of the same name). Buckets of named
// rules keep their state across changes to the rule's limit (tokens are
// clamped to a lower burst).
func (n *Node) SetRules(file *rules.Set) {
	n.rulesMu.Lock()
	defer n.rulesMu.Unlock()
	n.fileRules = file
	n.recombineLocked()
}

// recombineLocked puts in force the file's rules and the catalog's; it
// does nothing before the first SetRules. rulesMu is held.
func (n *Node) recombineLocked() {
	if n.fileRules == nil {
		return
	}
	s := n.catalog.Combine(n.fileRules)
	n.rules.Store(s)
	select {
	case n.advertise <- struct{}{}:
	default:
	}
	n.metrics.rulesLoaded.Set(float64(s.Len()))
	for _, r := range s.Rules() {
		// Each rule's series in its mode, at zero from the start (a mode
		// a check asks for instead appears with its first check).
		mode := r.Sync
		if r.Limit.Algo == bucket.SlidingWindowLog && mode == rules.SyncAuto {
			mode = rules.SyncOwner // as resolve decides it
		}
		n.metrics.forRule(r.Name, mode)
	}
	var version uint64
	for _, e := range n.catalog.Entries() {
		version = max(version, e.Version.Clock)
	}
	n.metrics.rulesVersion.Set(float64(version))
}

// PutRules sets rules through the API: validated all together (a bad one
// changes nothing), stored durably, put in force here and broadcast to the
// cluster. Errors for bad specs are *rules.FieldError; before the rules
// are loaded it returns ErrNotReady and changes nothing.
func (n *Node) PutRules(specs []rules.Spec) ([]rules.Entry, error) {
	if n.persist == nil {
		return nil, ErrRulesReadOnly
	}
	if !n.Ready() {
		return nil, ErrNotReady
	}
	n.rulesMu.Lock()
	entries, err := n.catalog.Put(specs, n.persist.Save)
	if err != nil {
		n.rulesMu.Unlock()
		return nil, err
	}
	n.recombineLocked()
	msgs := n.broadcastRules(entries)
	n.rulesMu.Unlock()
	n.sendRules(msgs)
	return entries, nil
}

// DeleteRule deletes an API rule, durably and across the cluster; a file
// rule of the same name is in force again. The error wraps rules.ErrNoRule
// if there is no such API rule.
func (n *Node) DeleteRule(name string) (rules.Entry, error) {
	if n.persist == nil {
		return rules.Entry{}, ErrRulesReadOnly
	}
	if !n.Ready() {
		return rules.Entry{}, ErrNotReady
	}
	n.rulesMu.Lock()
	e, err := n.catalog.Delete(name, n.persist.Save)
	if err != nil {
		n.rulesMu.Unlock()
		return rules.Entry{}, err
	}
	n.recombineLocked()
	msgs := n.broadcastRules([]rules.Entry{e})
	n.rulesMu.Unlock()
	n.sendRules(msgs)
	return e, nil
}

// RulesInForce returns the rules in force, file rules first, each with its
// version if it was set through the API.
func (n *Node) RulesInForce() []rules.Rule {
	s := n.rules.Load()
	if s == nil {
		return nil
	}
	return s.Rules()
}

// mergeRules takes in rule entries from a peer: what is news is put in
// force, passed on to the cluster, and stored (by persistLoop).
func (n *Node) mergeRules(entries []rules.Entry) {
	if len(entries) == 0 {
		return
	}
	n.rulesMu.Lock()
	changed := n.catalog.Merge(entries)
	if len(changed) > 0 {
		n.recombineLocked()
	}
	n.rulesMu.Unlock()
	if len(changed) == 0 {
		return
	}
	n.broadcastRules(changed)
	select {
	case n.rulesDirty <- struct{}{}:
	default:
	}
}

// broadcastRules queues entries for gossip, each under its rule's name so
// a newer version replaces an older one still queued, and returns the
// encoded entries. An entry too large for a packet travels only by the
// periodic full state exchange.
func (n *Node) broadcastRules(entries []rules.Entry) [][]byte {
	g := n.member.Load()
	if g == nil {
		return nil
	}
	var msgs [][]byte
	for i := range entries {
		b, err := msgpack.Marshal(&entries[i])
		if err != nil || len(b) > gossip.MaxPacket {
			n.log.Debug("rule change not broadcast; it travels by state exchange", "rule", entries[i].Name, "bytes", len(b), "err", err)
			continue
		}
		g.Broadcast(kindRule, entries[i].Name, b)
		msgs = append(msgs, b)
	}
	return msgs
}

// sendRules sends rule changes made here straight to every live member as
// well. The broadcast alone reaches a member only with high probability:
// its few transmissions go to random members, and during a partition they
// may all go to unreachable ones. The direct send makes a change reach
// every member this node can reach at once; the broadcast (re-sent by
// whoever finds it news) and the periodic state exchange cover lost
// packets and members out of reach.
func (n *Node) sendRules(msgs [][]byte) {
	g := n.member.Load()
	if g == nil || len(msgs) == 0 {
		return
	}
	to := alivePeers(g.Members())
	if len(to) == 0 {
		return
	}
	for _, b := range msgs {
		if err := g.Send(to, kindRule, b); err != nil {
			n.log.Debug("rule change not sent", "err", err)
		}
	}
}

// persistLoop stores the catalog when peers change it. A crash before it
// runs loses nothing that is not also on the peers.
func (n *Node) persistLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.rulesDirty:
		}
		if n.persist == nil {
			continue
		}
		if err := n.persist.Save(n.catalog.Entries()); err != nil {
			n.log.Error("storing rules changed by peers", "err", err)
		}
	}
}
