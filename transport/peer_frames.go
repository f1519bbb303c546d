package transport

import (
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// The codecs of the peer frames (peer_wire.go names their positions).
// Encoders write to a frameWriter's bytes.Buffer, which does not fail.
// Decoders return errMalformed for anything out of form or bounds.

func (b *peerBatch) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeUint(b.id)
	_ = e.EncodeArrayLen(len(b.checks))
	for i := range b.checks {
		c := &b.checks[i]
		fields := checkFields
		if c.Op == cluster.OpReserve {
			fields = reserveFields
		}
		_ = e.EncodeArrayLen(fields)
		_ = e.EncodeString(c.ID.Rule)
		_ = cluster.EncodeLimit(e, c.ID.Inline)
		_ = e.EncodeString(c.ID.Key)
		_ = cluster.EncodeLimit(e, c.Limit)
		_ = e.EncodeInt(c.Cost)
		_ = e.EncodeUint(uint64(c.Sync))
		_ = e.EncodeUint(uint64(c.Op))
		if fields == reserveFields {
			_ = e.EncodeInt(int64(c.MaxWait))
		}
	}
	encodeTraces(e, b.traces)
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
	b.checks = make([]cluster.PeerCheck, n)
	for i := range b.checks {
		if err := decodeCheck(d, &b.checks[i]); err != nil {
			return err
		}
	}
	b.traces, err = decodeTraces(d, n, b.traces)
	return err
}

func decodeCheck(d *msgpack.Decoder, c *cluster.PeerCheck) error {
	fields, err := d.DecodeArrayLen()
	if err != nil || (fields != checkFields && fields != reserveFields) {
		return errMalformed
	}
	if c.ID.Rule, err = decodeString(d, maxRuleBytes); err != nil {
		return err
	}
	if c.ID.Inline, err = decodeLimit(d); err != nil {
		return err
	}
	if c.ID.Key, err = decodeString(d, MaxKeyBytes); err != nil {
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
	if err != nil || (cluster.PeerOp(op) == cluster.OpReserve) != (fields == reserveFields) {
		return errMalformed
	}
	c.Op = cluster.PeerOp(op)
	if fields == reserveFields {
		w, err := d.DecodeInt64()
		if err != nil {
			return errMalformed
		}
		c.MaxWait = time.Duration(w)
	}
	if !c.Valid() {
		return errMalformed
	}
	return nil
}

func (r *peerBatchResult) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeUint(r.id)
	_ = e.EncodeArrayLen(len(r.decisions))
	for i := range r.decisions {
		d := &r.decisions[i]
		var v [decisionFields]int64
		v[decAllowed], v[decRemaining], v[decResetAfter], v[decRetryAfter] = boolInt(d.Allowed), d.Remaining, int64(d.ResetAfter), int64(d.RetryAfter)
		v[decTooLarge], v[decLimit], v[decGranted], v[decWait] = boolInt(d.TooLarge), d.Limit, d.Granted, int64(d.Wait)
		_ = e.EncodeArrayLen(decisionFields)
		for _, x := range v {
			_ = e.EncodeInt(x)
		}
	}
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
		if m, err := d.DecodeArrayLen(); err != nil || m != decisionFields {
			return errMalformed
		}
		var v [decisionFields]int64
		for j := range v {
			if v[j], err = d.DecodeInt64(); err != nil {
				return errMalformed
			}
		}
		if v[decAllowed]|v[decTooLarge] > 1 || v[decAllowed] < 0 || v[decTooLarge] < 0 || v[decRemaining] < 0 ||
			v[decResetAfter] < 0 || v[decRetryAfter] < 0 || v[decGranted] < 0 || v[decGranted] > bucket.MaxTokens || v[decWait] < 0 {
			return errMalformed
		}
		r.decisions[i] = bucket.Decision{
			Allowed: v[decAllowed] == 1, Remaining: v[decRemaining], ResetAfter: time.Duration(v[decResetAfter]),
			RetryAfter: time.Duration(v[decRetryAfter]), TooLarge: v[decTooLarge] == 1, Limit: v[decLimit],
			Granted: v[decGranted], Wait: time.Duration(v[decWait]),
		}
	}
	return nil
}

func (h *peerHandoff) encode(e *msgpack.Encoder) {
	_ = e.EncodeArrayLen(3)
	_ = e.EncodeUint(h.id)
	_ = e.EncodeUint(uint64(h.sync))
	_ = e.EncodeArrayLen(len(h.entries))
	for i := range h.entries {
		en := &h.entries[i]
		_ = e.EncodeArrayLen(entryFields)
		_ = e.EncodeString(en.ID.Rule)
		_ = cluster.EncodeLimit(e, en.ID.Inline)
		_ = e.EncodeString(en.ID.Key)
		_ = cluster.EncodeLimit(e, en.Limit)
		_ = e.EncodeInt(en.Tokens)
		_ = e.EncodeInt(en.Frac)
	}
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
		if err := decodeEntry(d, &h.entries[i]); err != nil {
			return err
		}
	}
	return nil
}

func decodeEntry(d *msgpack.Decoder, en *bucket.Entry) error {
	m, err := d.DecodeArrayLen()
	if err != nil || m != entryFields {
		return errMalformed
	}
	if en.ID.Rule, err = decodeString(d, maxRuleBytes); err != nil {
		return err
	}
	if en.ID.Inline, err = decodeLimit(d); err != nil {
		return err
	}
	if en.ID.Key, err = decodeString(d, MaxKeyBytes); err != nil {
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
	if en.Limit.Validate() != nil || en.Tokens > en.Limit.Burst || en.Tokens < -bucket.MaxTokens ||
		en.Frac < 0 || en.Frac >= int64(en.Limit.Period) ||
		(en.ID.Inline != (bucket.Limit{}) && en.ID.Inline.Validate() != nil) {
		return errMalformed
	}
	return nil
}

func (a *peerHandoffAck) encode(e *msgpack.Encoder) { _ = e.EncodeUint(a.id) }

func (a *peerHandoffAck) decode(d *msgpack.Decoder) error {
	var err error
	if a.id, err = d.DecodeUint64(); err != nil {
		return errMalformed
	}
	return nil
}

// decodeLimit decodes a limit's form (cluster.DecodeLimit); the caller
// checks its bounds.
func decodeLimit(d *msgpack.Decoder) (bucket.Limit, error) {
	l, err := cluster.DecodeLimit(d)
	if err != nil {
		return l, errMalformed
	}
	return l, nil
}

// decodeSync decodes a sync mode, rejecting unknown ones.
func decodeSync(d *msgpack.Decoder) (rules.Sync, error) {
	m, err := cluster.DecodeSync(d)
	if err != nil {
		return 0, errMalformed
	}
	return m, nil
}

// decodeString decodes a string of at most max bytes (cluster.DecodeString:
// a hostile declared length allocates no more than the frame holds).
func decodeString(d *msgpack.Decoder, max int) (string, error) {
	s, err := cluster.DecodeString(d, max)
	if err != nil {
		return "", errMalformed
	}
	return s, nil
}
