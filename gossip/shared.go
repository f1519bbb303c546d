package gossip

import (
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Handler receives what peers share beyond membership: messages they
// broadcast or send, and their state in full exchanges. memberlist calls it
// from its own goroutines, concurrently; no method may block.
type Handler interface {
	// Message handles a message of kind (≥ FirstKind) from a peer. body is
	// reused after Message returns. It reports false for a malformed body,
	// which is then counted as rejected.
	Message(kind byte, body []byte) bool
	// LocalState is this node's state for a full exchange with a peer (a
	// join when join is set, else the periodic push/pull). It must stay
	// well below 20 MiB.
	LocalState(join bool) []byte
	// MergeState merges a peer's LocalState. It reports false for a
	// malformed state.
	MergeState(state []byte, join bool) bool
}

// FirstKind is the lowest message kind a Handler may use; lower kinds are
// this package's own.
const FirstKind byte = 16

// MaxPacket is the largest body Send and Broadcast carry in one UDP packet.
// memberlist's packets are at most 1,400 bytes; this leaves room for its
// framing, a cluster label of up to 255 bytes, encryption (29 bytes) and a
// checksum.
const MaxPacket = 1024

// Broadcast spreads body to every member through memberlist's gossip
// (piggybacked on its own packets, each message sent a few times to random
// members). name identifies what the body is the latest value of: a newer
// broadcast of the same name replaces one still queued. Receivers pass on
// what was news to them by broadcasting it again. body must not be changed
// afterwards and must fit MaxPacket.
func (g *Gossip) Broadcast(kind byte, name string, body []byte) {
	g.queue.QueueBroadcast(&broadcast{name: string(kind) + name, msg: frame(kind, body)})
	g.traffic.queued.Inc()
}

// Send sends body to each of members in one UDP packet, best effort:
// nothing tells the sender whether it arrived. body must fit MaxPacket. It
// returns the errors of the sends that failed locally.
func (g *Gossip) Send(members []Member, kind byte, body []byte) error {
	msg := frame(kind, body)
	var errs []error
	for _, m := range members {
		g.traffic.out(len(msg))
		if err := g.ml.SendToAddress(memberlist.Address{Addr: m.Addr, Name: m.Name}, msg); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", m.Name, err))
		}
	}
	return errors.Join(errs...)
}

func frame(kind byte, body []byte) []byte {
	msg := make([]byte, 1+len(body))
	msg[0] = kind
	copy(msg[1:], body)
	return msg
}

// broadcast is a named message in the broadcast queue.
type broadcast struct {
	name string
	msg  []byte
}

func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	n, ok := o.(memberlist.NamedBroadcast)
	return ok && n.Name() == b.name
}

// traffic counts the messages and bytes of shared state, by direction.
type traffic struct {
	messages *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	queued   prometheus.Counter
	outMsgs  prometheus.Counter
	outBytes prometheus.Counter
	inMsgs   prometheus.Counter
	inBytes  prometheus.Counter
}

func newTraffic() *traffic {
	t := &traffic{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gossip_messages_total",
			Help: "Messages of shared state (counters, rules) sent directly or through the broadcast queue (out) and received (in); memberlist's own probes and membership gossip are not counted.",
		}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_gossip_bytes_total",
			Help: "Bytes of the messages in sluice_gossip_messages_total, before encryption.",
		}, []string{"direction"}),
		queued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_gossip_broadcasts_total",
			Help: "Messages queued for broadcast (rule changes); each is sent a few times, piggybacked on memberlist's gossip.",
		}),
	}
	t.outMsgs, t.outBytes = t.messages.WithLabelValues("out"), t.bytes.WithLabelValues("out")
	t.inMsgs, t.inBytes = t.messages.WithLabelValues("in"), t.bytes.WithLabelValues("in")
	return t
}

func (t *traffic) out(n int) { t.outMsgs.Inc(); t.outBytes.Add(float64(n)) }
func (t *traffic) in(n int)  { t.inMsgs.Inc(); t.inBytes.Add(float64(n)) }

func (t *traffic) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.messages, t.bytes, t.queued}
}
