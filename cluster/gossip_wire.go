package cluster

import (
	"bytes"
	"errors"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/gossip"
	"github.com/sluicerl/sluice/rules"
)

// What nodes send each other by gossip, beyond membership. A message is
// a kind byte (gossip frames it) and a msgpack body. The totals packet,
// sent every sync interval, is coded by hand with named positions; the
// rarer rule entries and state exchanges use msgpack's reflection with
// short tags, decoded through gossip.Unmarshal, which bounds every length.
const (
	// kindRule is one API rule entry (rules.Entry), broadcast and, from the
	// node where it changed, sent to every live member.
	kindRule = gossip.FirstKind + iota
	// kindTotals is a totals packet, sent to every live member.
	kindTotals
)

// ErrMalformed is a message from a peer that does not decode or holds
// values out of bounds. It is dropped and counted.
var ErrMalformed = errors.New("malformed peer message")

// totalUpdate is what one node tells its peers about one gossip-mode
// bucket: the running total of tokens it has admitted from its replica in
// the current generation of its record of that bucket. Totals only grow
// within a generation, so a receiver applies the difference from the last
// total it saw, and a lost, duplicated or reordered update is repaired by
// the next one. A new generation (higher number) starts again from zero.
type totalUpdate struct {
	Sync  rules.Sync   // gossip, or auto in a small cluster
	ID    bucket.ID    // the bucket
	Limit bucket.Limit // the sender's limit, for a receiver with no replica yet
	Gen   uint64       // the generation of the sender's record
	Total int64        // tokens admitted by the sender in this generation
}

// totalsPacket is a batch of updates from one node, sized to travel in one
// UDP packet.
type totalsPacket struct {
	Origin  string // the node that admitted the tokens
	Updates []totalUpdate
}

// A totals packet is [origin, [update...]]; an update is an array with
// these positions.
const (
	updSync = iota
	updRule
	updInline // nil for a named rule's bucket
	updKey
	updLimit
	updTotal // [gen, total]
	updFields
)

// encodeTotals encodes updates from origin into as few packets of at most
// maxBytes as they fit in (an update that alone exceeds maxBytes, which
// the bounds on names and keys make impossible with the default sizes, is
// sent alone).
func encodeTotals(origin string, updates []totalUpdate, maxBytes int) [][]byte {
	var one bytes.Buffer
	e := msgpack.NewEncoder(&one)
	header := func(n int) []byte {
		var h bytes.Buffer
		he := msgpack.NewEncoder(&h)
		_ = he.EncodeArrayLen(2)
		_ = he.EncodeString(origin)
		_ = he.EncodeArrayLen(n)
		return h.Bytes()
	}
	var packets [][]byte
	var body []byte
	n := 0
	flush := func() {
		if n > 0 {
			packets = append(packets, append(header(n), body...))
		}
		body, n = nil, 0
	}
	headerMax := len(header(1 << 16))
	for i := range updates {
		one.Reset()
		encodeUpdate(e, &updates[i])
		if n > 0 && (headerMax+len(body)+one.Len() > maxBytes || n == MaxBatch) {
			flush()
		}
		body = append(body, one.Bytes()...)
		n++
	}
	flush()
	return packets
}

func encodeUpdate(e *msgpack.Encoder, u *totalUpdate) {
	// Writes to a bytes.Buffer do not fail.
	_ = e.EncodeArrayLen(updFields)
	_ = e.EncodeUint(uint64(u.Sync))
	_ = e.EncodeString(u.ID.Rule)
	if u.ID.Inline == (bucket.Limit{}) {
		_ = e.EncodeNil()
	} else {
		_ = EncodeLimit(e, u.ID.Inline)
	}
	_ = e.EncodeString(u.ID.Key)
	_ = EncodeLimit(e, u.Limit)
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeUint(u.Gen)
	_ = e.EncodeInt(u.Total)
}

// maxPacketBytes bounds a totals packet.
const maxPacketBytes = 1 << 20

// maxNameBytes bounds a rule or node name on the wire.
const maxNameBytes = 256

// heartbeat is a totals packet with no totals: in a small cluster a node
// sends one each sync interval it has nothing to say, so that its peers
// know it is there (silence.go).
func heartbeat(origin string) []byte {
	var b bytes.Buffer
	e := msgpack.NewEncoder(&b)
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeString(origin)
	_ = e.EncodeArrayLen(0)
	return b.Bytes()
}

// decodeTotals decodes a packet made by encodeTotals. A malformed packet
// is ErrMalformed and nothing of it is returned.
func decodeTotals(b []byte) (totalsPacket, error) {
	var p totalsPacket
	if len(b) > maxPacketBytes {
		return p, ErrMalformed
	}
	r := bytes.NewReader(b) // an io.ByteScanner: the decoder reads it directly
	d := msgpack.NewDecoder(r)
	if n, err := d.DecodeArrayLen(); err != nil || n != 2 {
		return p, ErrMalformed
	}
	var err error
	if p.Origin, err = DecodeString(d, maxNameBytes); err != nil || p.Origin == "" {
		return totalsPacket{}, ErrMalformed
	}
	n, err := d.DecodeArrayLen()
	if err != nil || n < 0 || n > MaxBatch || n > len(b) { // none: a heartbeat
		return totalsPacket{}, ErrMalformed
	}
	p.Updates = make([]totalUpdate, n)
	for i := range p.Updates {
		if err := decodeUpdate(d, &p.Updates[i]); err != nil {
			return totalsPacket{}, err
		}
	}
	if r.Len() != 0 {
		return totalsPacket{}, ErrMalformed
	}
	return p, nil
}

func decodeUpdate(d *msgpack.Decoder, u *totalUpdate) error {
	if m, err := d.DecodeArrayLen(); err != nil || m != updFields {
		return ErrMalformed
	}
	var err error
	if u.Sync, err = DecodeSync(d); err != nil || (u.Sync != rules.SyncGossip && u.Sync != rules.SyncAuto) {
		return ErrMalformed
	}
	if u.ID.Rule, err = DecodeString(d, maxNameBytes); err != nil {
		return err
	}
	if c, err := d.PeekCode(); err != nil {
		return ErrMalformed
	} else if c == 0xc0 { // nil: a named rule's bucket
		_ = d.DecodeNil()
	} else if u.ID.Inline, err = DecodeLimit(d); err != nil || u.ID.Inline.Validate() != nil {
		return ErrMalformed
	}
	if u.ID.Key, err = DecodeString(d, MaxKeyBytes); err != nil {
		return err
	}
	if u.Limit, err = DecodeLimit(d); err != nil || u.Limit.Validate() != nil {
		return ErrMalformed
	}
	if m, err := d.DecodeArrayLen(); err != nil || m != 2 {
		return ErrMalformed
	}
	if u.Gen, err = d.DecodeUint64(); err != nil {
		return ErrMalformed
	}
	if u.Total, err = d.DecodeInt64(); err != nil || u.Total < 0 {
		return ErrMalformed
	}
	return nil
}

// EncodeLimit writes a limit as every sluice message carries one:
// [rate, period, burst], with the algorithm as a fourth element unless it
// is the token bucket (so token-bucket limits read the same on nodes that
// know only that one). The peer wire in transport uses it too.
func EncodeLimit(e *msgpack.Encoder, l bucket.Limit) error {
	n := 3
	if l.Algo != bucket.TokenBucket {
		n = 4
	}
	if err := e.EncodeArrayLen(n); err != nil {
		return err
	}
	if err := e.EncodeInt(l.Rate); err != nil {
		return err
	}
	if err := e.EncodeInt(int64(l.Period)); err != nil {
		return err
	}
	if err := e.EncodeInt(l.Burst); err != nil || n == 3 {
		return err
	}
	return e.EncodeUint(uint64(l.Algo))
}

// DecodeLimit reads a limit written by EncodeLimit. It checks the form,
// not the bounds: the caller validates (bucket.Limit.Validate), as an
// absent inline limit is written as the zero Limit.
func DecodeLimit(d *msgpack.Decoder) (bucket.Limit, error) {
	var l bucket.Limit
	n, err := d.DecodeArrayLen()
	if err != nil || (n != 3 && n != 4) {
		return l, ErrMalformed
	}
	var p int64
	if l.Rate, err = d.DecodeInt64(); err != nil {
		return l, ErrMalformed
	}
	if p, err = d.DecodeInt64(); err != nil {
		return l, ErrMalformed
	}
	if l.Burst, err = d.DecodeInt64(); err != nil {
		return l, ErrMalformed
	}
	if n == 4 {
		a, err := d.DecodeUint8()
		if err != nil || a == 0 || !bucket.Algorithm(a).Valid() {
			return l, ErrMalformed
		}
		l.Algo = bucket.Algorithm(a)
	}
	l.Period = time.Duration(p)
	return l, nil
}

// DecodeString decodes a string of at most max bytes. Messages are in
// memory and bounded, and msgpack grows a string only as its bytes
// arrive, so a hostile declared length cannot allocate more than the
// message holds.
func DecodeString(d *msgpack.Decoder, max int) (string, error) {
	s, err := d.DecodeString()
	if err != nil || len(s) > max {
		return "", ErrMalformed
	}
	return s, nil
}

// DecodeSync decodes a sync mode written as an unsigned integer, rejecting
// unknown ones; the peer wire in transport uses it too.
func DecodeSync(d *msgpack.Decoder) (rules.Sync, error) {
	v, err := d.DecodeUint8()
	if err != nil || v > uint8(rules.SyncOwner) {
		return 0, ErrMalformed
	}
	return rules.Sync(v), nil
}

// state is the body of a full state exchange.
type state struct {
	Rules []rules.Entry `msgpack:"r"`
	// Replicas go only to a joining node (or between the halves of a
	// healed partition, which join again): it starts from them.
	Replicas []replica `msgpack:"b,omitempty"`
	// Missing are the members the sender counts as missing (partition.go),
	// so that a node that joins during a partition learns of the far side.
	Missing []missingMember `msgpack:"m,omitempty"`
}

// missingMember is a member missing for another For nanoseconds.
type missingMember struct {
	Name string `msgpack:"n"`
	For  int64  `msgpack:"f"`
}

// replicaState is one gossip-mode bucket as a node holds it, with the
// totals of each origin that its level accounts for.
type replicaState struct {
	Sync  rules.Sync
	Entry bucket.Entry
	Seen  []originTotal
}

// replica is a replicaState on the wire.
type replica struct {
	Sync   rules.Sync `msgpack:"s"`
	Rule   string     `msgpack:"r"`
	Inline [3]int64   `msgpack:"i"`
	Key    string     `msgpack:"k"`
	Limit  [3]int64   `msgpack:"l"`
	// Algo is the algorithm of Limit, and of Inline if set (an inline
	// bucket's limit is its ID's); absent for the token bucket, so older
	// nodes read token buckets as before.
	Algo   bucket.Algorithm `msgpack:"a,omitempty"`
	Tokens int64            `msgpack:"t"`
	Frac   int64            `msgpack:"f"`
	Seen   []originTotal    `msgpack:"o,omitempty"`
}

func limitArray(l bucket.Limit) [3]int64 { return [3]int64{l.Rate, int64(l.Period), l.Burst} }
func arrayLimit(a [3]int64, algo bucket.Algorithm) bucket.Limit {
	return bucket.Limit{Rate: a[0], Period: time.Duration(a[1]), Burst: a[2], Algo: algo}
}

func toReplica(s replicaState) replica {
	e := &s.Entry
	return replica{Sync: s.Sync, Rule: e.ID.Rule, Inline: limitArray(e.ID.Inline), Key: e.ID.Key,
		Limit: limitArray(e.Limit), Algo: e.Limit.Algo, Tokens: e.Tokens, Frac: e.Frac, Seen: s.Seen}
}

// fromReplica returns r as a replicaState, and false if r is not one a
// peer may send: a gossip-mode bucket with valid limits and a level
// within them.
func fromReplica(r replica) (replicaState, bool) {
	e := bucket.Entry{ID: bucket.ID{Rule: r.Rule, Key: r.Key}, Limit: arrayLimit(r.Limit, r.Algo), Tokens: r.Tokens, Frac: r.Frac}
	if r.Inline != [3]int64{} {
		e.ID.Inline = arrayLimit(r.Inline, r.Algo)
		if e.ID.Inline.Validate() != nil {
			return replicaState{}, false
		}
	}
	ok := (r.Sync == rules.SyncGossip || r.Sync == rules.SyncAuto) && e.Limit.Validate() == nil &&
		len(r.Key) <= MaxKeyBytes && len(r.Rule) <= maxNameBytes && e.Tokens >= -bucket.MaxTokens
	return replicaState{Sync: r.Sync, Entry: e, Seen: r.Seen}, ok
}
