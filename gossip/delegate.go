package gossip

// delegate answers memberlist's questions about this node.
type delegate struct{ g *Gossip }

func (d delegate) NodeMeta(int) []byte { return *d.g.meta.Load() }

// NotifyMsg handles a message from a peer. It runs on memberlist's packet
// handler and must not block; b is reused after it returns.
func (d delegate) NotifyMsg(b []byte) {
	d.g.traffic.in(len(b))
	ok := false
	switch {
	case len(b) > 0 && b[0] >= FirstKind:
		ok = d.g.cfg.Handler != nil && d.g.cfg.Handler.Message(b[0], b[1:])
	default:
		var l leaving
		if l, ok = decodeMessage(b); ok {
			d.g.view.leaving(l.Name)
		}
	}
	if !ok {
		d.g.rejected.WithLabelValues(rejectMalformed).Inc()
	}
}

// GetBroadcasts hands memberlist the queued broadcasts that fit the room
// left in a packet it is about to send.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	out := d.g.queue.GetBroadcasts(overhead, limit)
	for _, m := range out {
		d.g.traffic.out(len(m))
	}
	return out
}

func (d delegate) LocalState(join bool) []byte {
	if d.g.cfg.Handler == nil {
		return nil
	}
	s := d.g.cfg.Handler.LocalState(join)
	if len(s) > 0 {
		d.g.traffic.out(len(s))
	}
	return s
}

func (d delegate) MergeRemoteState(s []byte, join bool) {
	if d.g.cfg.Handler == nil || len(s) == 0 {
		return
	}
	d.g.traffic.in(len(s))
	if !d.g.cfg.Handler.MergeState(s, join) {
		d.g.rejected.WithLabelValues(rejectMalformed).Inc()
	}
}
