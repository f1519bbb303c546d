package transport

import (
	"bytes"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// CounterUpdate is what one node tells its peers about one gossip-mode
// bucket: the running total of tokens it has admitted from its replica in
// the current generation of its record of that bucket. Totals only grow
// within a generation, so a receiver applies the difference from the last
// total it saw, and a lost, duplicated or reordered update is repaired by
// the next one. A new generation (higher number) starts again from zero.
type CounterUpdate struct {
	// Sync is the bucket's mode: gossip, or auto in a small cluster.
	Sync rules.Sync
	// ID is the bucket.
	ID bucket.ID
	// Limit is the limit the sender applies, for a receiver that has no
	// replica yet.
	Limit bucket.Limit
	// Gen is the generation of the sender's record of this bucket.
	Gen uint64
	// Total is the tokens admitted by the sender in this generation.
	Total int64
}

// CounterPacket is a batch of updates from one node, sized to travel in one
// UDP packet.
type CounterPacket struct {
	// Origin is the name of the node that admitted the tokens.
	Origin  string
	Updates []CounterUpdate
}

// EncodeCounterPackets encodes updates from origin into as few packets of at
// most maxBytes as they fit in (an update that alone exceeds maxBytes, which
// the bounds on names and keys make impossible with the default sizes, is
// sent alone).
func EncodeCounterPackets(origin string, updates []CounterUpdate, maxBytes int) [][]byte {
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

func encodeUpdate(e *msgpack.Encoder, u *CounterUpdate) {
	// Writes to a bytes.Buffer do not fail.
	_ = e.EncodeArrayLen(6)
	_ = e.EncodeUint(uint64(u.Sync))
	_ = e.EncodeString(u.ID.Rule)
	if u.ID.Inline == (bucket.Limit{}) {
		_ = e.EncodeNil()
	} else {
		_ = encodeLimit(e, u.ID.Inline)
	}
	_ = e.EncodeString(u.ID.Key)
	_ = encodeLimit(e, u.Limit)
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeUint(u.Gen)
	_ = e.EncodeInt(u.Total)
}

// DecodeCounterPacket decodes a packet made by EncodeCounterPackets. A
// malformed packet is an error and nothing of it is returned.
func DecodeCounterPacket(b []byte) (CounterPacket, error) {
	var p CounterPacket
	if len(b) > maxFrameBytes {
		return p, errMalformed
	}
	r := bytes.NewReader(b) // an io.ByteScanner: the decoder reads it directly
	d := msgpack.NewDecoder(r)
	if n, err := d.DecodeArrayLen(); err != nil || n != 2 {
		return p, errMalformed
	}
	var err error
	if p.Origin, err = decodeBoundedString(d, maxRuleBytes); err != nil || p.Origin == "" {
		return CounterPacket{}, errMalformed
	}
	n, err := d.DecodeArrayLen()
	if err != nil || n < 1 || n > MaxBatch || n > len(b) {
		return CounterPacket{}, errMalformed
	}
	p.Updates = make([]CounterUpdate, n)
	for i := range p.Updates {
		if err := decodeUpdate(d, &p.Updates[i]); err != nil {
			return CounterPacket{}, err
		}
	}
	if r.Len() != 0 {
		return CounterPacket{}, errMalformed
	}
	return p, nil
}

func decodeUpdate(d *msgpack.Decoder, u *CounterUpdate) error {
	if m, err := d.DecodeArrayLen(); err != nil || m != 6 {
		return errMalformed
	}
	var err error
	if u.Sync, err = decodeSync(d); err != nil || (u.Sync != rules.SyncGossip && u.Sync != rules.SyncAuto) {
		return errMalformed
	}
	if u.ID.Rule, err = decodeBoundedString(d, maxRuleBytes); err != nil {
		return err
	}
	if c, err := d.PeekCode(); err != nil {
		return errMalformed
	} else if c == 0xc0 { // nil: a named rule's bucket
		_ = d.DecodeNil()
	} else if u.ID.Inline, err = decodeLimit(d); err != nil || !ValidLimit(u.ID.Inline) {
		return errMalformed
	}
	if u.ID.Key, err = decodeBoundedString(d, MaxKeyBytes); err != nil {
		return err
	}
	if u.Limit, err = decodeLimit(d); err != nil || !ValidLimit(u.Limit) {
		return errMalformed
	}
	if m, err := d.DecodeArrayLen(); err != nil || m != 2 {
		return errMalformed
	}
	if u.Gen, err = d.DecodeUint64(); err != nil {
		return errMalformed
	}
	if u.Total, err = d.DecodeInt64(); err != nil || u.Total < 0 {
		return errMalformed
	}
	return nil
}
