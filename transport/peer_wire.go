package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

// Peer frames: a 4-byte big-endian length (of what follows), a type byte,
// and a msgpack body. Bodies are arrays with short, fixed layouts, encoded
// and decoded by hand: no reflection on the hot path, and every length is
// checked before anything is allocated.
const (
	frameCheckBatch       byte = 1 // peerBatch: checks for the owner
	frameCheckBatchResult byte = 2 // peerBatchResult: its answers, in order
	frameHandoff          byte = 3 // peerHandoff: buckets whose owner this node now is
	frameHandoffAck       byte = 4 // peerHandoffAck: they are merged

	// maxFrameBytes bounds a frame; a longer one closes the connection.
	maxFrameBytes = 1 << 20
	// maxRuleBytes bounds a rule name on the wire.
	maxRuleBytes = 256
)

// errMalformed is a frame that does not decode. The connection it came on
// is closed and the frame counted.
var errMalformed = errors.New("transport: malformed peer frame")

// PeerCheck is one check forwarded to its key's owner. It carries the limit,
// so the owner decides with the forwarder's rule even if their rule sets
// briefly differ.
type PeerCheck struct {
	// ID is the bucket (rule name or inline limit, and key).
	ID bucket.ID
	// Limit is the limit to apply.
	Limit bucket.Limit
	// Cost is the number of tokens to spend.
	Cost int64
	// Sync is the check's sync mode (owner, or auto in a large cluster):
	// the owner keeps the buckets of each mode apart.
	Sync rules.Sync
	// Op is what the owner is asked to do; a check by default.
	Op PeerOp
	// MaxWait bounds the wait of an OpReserve.
	MaxWait time.Duration
}

// PeerOp is what a forwarded PeerCheck asks of the owner.
type PeerOp uint8

const (
	// OpCheck spends Cost tokens if the bucket holds them.
	OpCheck PeerOp = iota
	// OpLease takes up to Cost tokens for the sender to spend itself (a
	// lease); the decision's Granted says how many it got.
	OpLease
	// OpReturn gives back Cost leased or reserved tokens that were not
	// spent.
	OpReturn
	// OpReserve reserves Cost tokens if they are available within MaxWait
	// (a /v1/wait); the decision's Wait says when.
	OpReserve
)

// maxPeerWait bounds MaxWait on the wire.
const maxPeerWait = time.Hour

// peerBatch is a batch of checks for one owner, under one request id.
type peerBatch struct {
	id     uint64
	checks []PeerCheck
}

// peerBatchResult answers a peerBatch, one decision per check, in order.
type peerBatchResult struct {
	id        uint64
	decisions []bucket.Decision
}

// peerHandoff carries buckets to their new owner.
type peerHandoff struct {
	id      uint64
	sync    rules.Sync
	entries []bucket.Entry
}

// peerHandoffAck acknowledges a peerHandoff.
type peerHandoffAck struct{ id uint64 }

func (h *peerHandoff) encode(e *msgpack.Encoder) error {
	if err := e.EncodeArrayLen(3); err != nil {
		return err
	}
	if err := e.EncodeUint(h.id); err != nil {
		return err
	}
	if err := e.EncodeUint(uint64(h.sync)); err != nil {
		return err
	}
	if err := e.EncodeArrayLen(len(h.entries)); err != nil {
		return err
	}
	for i := range h.entries {
		en := &h.entries[i]
		if err := e.EncodeArrayLen(6); err != nil {
			return err
		}
		if err := e.EncodeString(en.ID.Rule); err != nil {
			return err
		}
		if err := encodeLimit(e, en.ID.Inline); err != nil {
			return err
		}
		if err := e.EncodeString(en.ID.Key); err != nil {
			return err
		}
		if err := encodeLimit(e, en.Limit); err != nil {
			return err
		}
		if err := e.EncodeInt(en.Tokens); err != nil {
			return err
		}
		if err := e.EncodeInt(en.Frac); err != nil {
			return err
		}
	}
	return nil
}

func (h *peerHandoff) decode(d *msgpack.Decoder) error {
	if n, err := d.DecodeArrayLen(); err != nil || n != 3 {
		return errMalformed
	}
	var err error
	if h.id, err = d.DecodeUint64(); err != nil {
		return errMalformed
	}
	if h.sync, err = decodeSync(d); err != nil {
		return err
	}
	n, err := d.DecodeArrayLen()
	if err != nil || n < 1 || n > MaxBatch {
		return errMalformed
	}
	h.entries = make([]bucket.Entry, n)
	for i := range h.entries {
		en := &h.entries[i]
		if m, err := d.DecodeArrayLen(); err != nil || m != 6 {
			return errMalformed
		}
		if en.ID.Rule, err = decodeBoundedString(d, maxRuleBytes); err != nil {
			return err
		}
		if en.ID.Inline, err = decodeLimit(d); err != nil {
			return err
		}
		if en.ID.Key, err = decodeBoundedString(d, MaxKeyBytes); err != nil {
			return err
		}
		if en.Limit, err = decodeLimit(d); err != nil {
			return err
		}
		if en.Tokens, err = d.DecodeInt64(); err != nil {
			return errMalformed
		}
		if en.Frac, err = d.DecodeInt64(); err != nil {
			return errMalformed
		}
		if !ValidLimit(en.Limit) || en.Tokens > en.Limit.Burst || en.Tokens < -bucket.MaxTokens ||
			en.Frac < 0 || en.Frac >= int64(en.Limit.Period) ||
			(en.ID.Inline != (bucket.Limit{}) && !ValidLimit(en.ID.Inline)) {
			return errMalformed
		}
	}
	return nil
}

func (a *peerHandoffAck) encode(e *msgpack.Encoder) error { return e.EncodeUint(a.id) }

func (a *peerHandoffAck) decode(d *msgpack.Decoder) error {
	var err error
	if a.id, err = d.DecodeUint64(); err != nil {
		return errMalformed
	}
	return nil
}

// encodeLimit writes a limit as [rate, period, burst], with the algorithm
// as a fourth element unless it is the token bucket (so token-bucket
// limits read the same on nodes that know only that one).
func encodeLimit(e *msgpack.Encoder, l bucket.Limit) error {
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

func decodeLimit(d *msgpack.Decoder) (bucket.Limit, error) {
	var l bucket.Limit
	n, err := d.DecodeArrayLen()
	if err != nil || (n != 3 && n != 4) {
		return l, errMalformed
	}
	var p int64
	if l.Rate, err = d.DecodeInt64(); err != nil {
		return l, errMalformed
	}
	if p, err = d.DecodeInt64(); err != nil {
		return l, errMalformed
	}
	if l.Burst, err = d.DecodeInt64(); err != nil {
		return l, errMalformed
	}
	if n == 4 {
		a, err := d.DecodeUint8()
		if err != nil || a == 0 || !bucket.Algorithm(a).Valid() {
			return l, errMalformed
		}
		l.Algo = bucket.Algorithm(a)
	}
	l.Period = time.Duration(p)
	return l, nil
}

// ValidLimit reports whether l is a limit a peer may send: within the
// bounds the API enforces, of a known algorithm, and a window's burst
// equal to its rate (see bucket.Limit).
func ValidLimit(l bucket.Limit) bool {
	return l.Rate > 0 && l.Rate <= bucket.MaxTokens && l.Burst > 0 && l.Burst <= bucket.MaxTokens && l.Period > 0 &&
		l.Algo.Valid() && (!l.Algo.Windowed() || l.Burst == l.Rate)
}

func (b *peerBatch) encode(e *msgpack.Encoder) error {
	if err := e.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := e.EncodeUint(b.id); err != nil {
		return err
	}
	if err := e.EncodeArrayLen(len(b.checks)); err != nil {
		return err
	}
	for i := range b.checks {
		c := &b.checks[i]
		fields := 7
		if c.Op == OpReserve {
			fields = 8
		}
		if err := e.EncodeArrayLen(fields); err != nil {
			return err
		}
		if err := e.EncodeString(c.ID.Rule); err != nil {
			return err
		}
		if err := encodeLimit(e, c.ID.Inline); err != nil {
			return err
		}
		if err := e.EncodeString(c.ID.Key); err != nil {
			return err
		}
		if err := encodeLimit(e, c.Limit); err != nil {
			return err
		}
		if err := e.EncodeInt(c.Cost); err != nil {
			return err
		}
		if err := e.EncodeUint(uint64(c.Sync)); err != nil {
			return err
		}
		if err := e.EncodeUint(uint64(c.Op)); err != nil {
			return err
		}
		if fields == 8 {
			if err := e.EncodeInt(int64(c.MaxWait)); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeSync decodes a sync mode, rejecting unknown ones.
func decodeSync(d *msgpack.Decoder) (rules.Sync, error) {
	v, err := d.DecodeUint8()
	if err != nil || v > uint8(rules.SyncOwner) {
		return 0, errMalformed
	}
	return rules.Sync(v), nil
}

func (b *peerBatch) decode(d *msgpack.Decoder) error {
	if n, err := d.DecodeArrayLen(); err != nil || n != 2 {
		return errMalformed
	}
	var err error
	if b.id, err = d.DecodeUint64(); err != nil {
		return errMalformed
	}
	n, err := d.DecodeArrayLen()
	if err != nil || n < 1 || n > MaxBatch {
		return errMalformed
	}
	b.checks = make([]PeerCheck, n)
	for i := range b.checks {
		c := &b.checks[i]
		m, err := d.DecodeArrayLen()
		if err != nil || (m != 7 && m != 8) {
			return errMalformed
		}
		if c.ID.Rule, err = decodeBoundedString(d, maxRuleBytes); err != nil {
			return err
		}
		if c.ID.Inline, err = decodeLimit(d); err != nil {
			return err
		}
		if c.ID.Key, err = decodeBoundedString(d, MaxKeyBytes); err != nil {
			return err
		}
		if c.Limit, err = decodeLimit(d); err != nil {
			return err
		}
		if c.Cost, err = d.DecodeInt64(); err != nil {
			return errMalformed
		}
		if c.Sync, err = decodeSync(d); err != nil {
			return err
		}
		op, err := d.DecodeUint8()
		if err != nil || PeerOp(op) > OpReserve || (PeerOp(op) == OpReserve) != (m == 8) {
			return errMalformed
		}
		c.Op = PeerOp(op)
		if m == 8 {
			w, err := d.DecodeInt64()
			if err != nil || w < 0 || w > int64(maxPeerWait) {
				return errMalformed
			}
			c.MaxWait = time.Duration(w)
		}
		if !ValidLimit(c.Limit) || c.Cost < 0 || c.Cost > bucket.MaxTokens ||
			(c.ID.Inline != (bucket.Limit{}) && !ValidLimit(c.ID.Inline)) {
			return errMalformed
		}
	}
	return nil
}

// decodeBoundedString decodes a string of at most max bytes. The frame is
// in memory and at most maxFrameBytes long, and msgpack grows a string only
// as its bytes arrive, so a hostile declared length cannot allocate more
// than the frame holds.
func decodeBoundedString(d *msgpack.Decoder, max int) (string, error) {
	s, err := d.DecodeString()
	if err != nil || len(s) > max {
		return "", errMalformed
	}
	return s, nil
}

func (r *peerBatchResult) encode(e *msgpack.Encoder) error {
	if err := e.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := e.EncodeUint(r.id); err != nil {
		return err
	}
	if err := e.EncodeArrayLen(len(r.decisions)); err != nil {
		return err
	}
	for i := range r.decisions {
		d := &r.decisions[i]
		if err := e.EncodeArrayLen(8); err != nil {
			return err
		}
		for _, v := range [...]int64{boolInt(d.Allowed), d.Remaining, int64(d.ResetAfter), int64(d.RetryAfter), boolInt(d.TooLarge), d.Limit, d.Granted, int64(d.Wait)} {
			if err := e.EncodeInt(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (r *peerBatchResult) decode(d *msgpack.Decoder) error {
	if n, err := d.DecodeArrayLen(); err != nil || n != 2 {
		return errMalformed
	}
	var err error
	if r.id, err = d.DecodeUint64(); err != nil {
		return errMalformed
	}
	n, err := d.DecodeArrayLen()
	if err != nil || n < 1 || n > MaxBatch {
		return errMalformed
	}
	r.decisions = make([]bucket.Decision, n)
	for i := range r.decisions {
		if m, err := d.DecodeArrayLen(); err != nil || m != 8 {
			return errMalformed
		}
		var v [8]int64
		for j := range v {
			if v[j], err = d.DecodeInt64(); err != nil {
				return errMalformed
			}
		}
		if v[0]|v[4] > 1 || v[0] < 0 || v[4] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0 || v[6] < 0 || v[6] > bucket.MaxTokens || v[7] < 0 {
			return errMalformed
		}
		r.decisions[i] = bucket.Decision{
			Allowed: v[0] == 1, Remaining: v[1], ResetAfter: time.Duration(v[2]),
			RetryAfter: time.Duration(v[3]), TooLarge: v[4] == 1, Limit: v[5], Granted: v[6], Wait: time.Duration(v[7]),
		}
	}
	return nil
}

// frameWriter encodes frames into a reusable buffer.
type frameWriter struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newFrameWriter() *frameWriter {
	w := &frameWriter{}
	w.enc = msgpack.NewEncoder(&w.buf)
	return w
}

// write encodes one frame of type t with body and writes it to dst.
func (w *frameWriter) write(dst io.Writer, t byte, body interface{ encode(*msgpack.Encoder) error }) error {
	w.buf.Reset()
	w.buf.Write([]byte{0, 0, 0, 0, t})
	w.enc.Reset(&w.buf)
	w.enc.UseCompactInts(true) // Reset clears options
	if err := body.encode(w.enc); err != nil {
		return fmt.Errorf("encode peer frame: %w", err)
	}
	b := w.buf.Bytes()
	if len(b)-4 > maxFrameBytes {
		return fmt.Errorf("peer frame of %d bytes over the %d limit", len(b)-4, maxFrameBytes)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err := dst.Write(b)
	return err
}

// frameReader reads frames into a reusable buffer.
type frameReader struct {
	buf []byte
	rd  bytes.Reader
	dec *msgpack.Decoder
}

func newFrameReader() *frameReader {
	r := &frameReader{}
	r.dec = msgpack.NewDecoder(&r.rd)
	return r
}

// read reads one frame from src and returns its type and a decoder over
// its body, valid until the next read. A frame over the limit is an error:
// the connection must be closed.
func (r *frameReader) read(src io.Reader) (byte, *msgpack.Decoder, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(src, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 1 || n > maxFrameBytes {
		return 0, nil, fmt.Errorf("%w: declared length %d", errMalformed, n)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(src, r.buf); err != nil {
		return 0, nil, err
	}
	r.rd.Reset(r.buf[1:])
	r.dec.Reset(&r.rd)
	return r.buf[0], r.dec, nil
}
