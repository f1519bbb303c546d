package transport

// The hand-written body decoders (msgpack in mp_decode.go, the JSON fast
// path in json_fast.go) fill a checkJSON field by field through these, so
// that both name, intern and store fields the same way.

// A check's fields, as the hand-written decoders number them.
const (
	fieldKey = iota
	fieldRule
	fieldDescriptors
	fieldLimit
	fieldPeriod
	fieldBurst
	fieldAlgorithm
	fieldCost
	fieldSync
	fieldMaxWait
	fieldNone = -1
)

// checkField returns the field named name exactly, or fieldNone.
func checkField(name []byte) int {
	switch string(name) { // no allocation: the compiler compares in place
	case "key":
		return fieldKey
	case "rule":
		return fieldRule
	case "descriptors":
		return fieldDescriptors
	case "limit":
		return fieldLimit
	case "period":
		return fieldPeriod
	case "burst":
		return fieldBurst
	case "algorithm":
		return fieldAlgorithm
	case "cost":
		return fieldCost
	case "sync":
		return fieldSync
	case "max_wait":
		return fieldMaxWait
	}
	return fieldNone
}

// setString stores a string field's value (f is a string field).
func (c *checkJSON) setString(f int, v []byte) {
	switch f {
	case fieldKey:
		c.Key = string(v)
	case fieldRule:
		c.Rule = string(v)
	case fieldPeriod:
		c.Period = intern(v)
	case fieldAlgorithm:
		c.Algorithm = intern(v)
	case fieldSync:
		c.Sync = intern(v)
	case fieldMaxWait:
		c.MaxWait = intern(v)
	}
}

// setInt stores an integer field's value (f is limit, burst or cost) in
// the check's own storage, so that no pointer is allocated.
func (c *checkJSON) setInt(f int, v int64) {
	switch f {
	case fieldLimit:
		c.ints[0] = v
		c.Limit = &c.ints[0]
	case fieldBurst:
		c.ints[1] = v
		c.Burst = &c.ints[1]
	case fieldCost:
		c.ints[2] = v
		c.Cost = &c.ints[2]
	}
}

// repoint points Limit, Burst and Cost, where set, at c's own storage
// again, after c was copied (a slice that grew).
func (c *checkJSON) repoint() {
	if c.Limit != nil {
		c.Limit = &c.ints[0]
	}
	if c.Burst != nil {
		c.Burst = &c.ints[1]
	}
	if c.Cost != nil {
		c.Cost = &c.ints[2]
	}
}

// isIntField reports whether f holds an integer.
func isIntField(f int) bool { return f == fieldLimit || f == fieldBurst || f == fieldCost }

// intern returns the values clients send most often for periods, waits,
// algorithms and sync modes without allocating; others are copied.
func intern(v []byte) string {
	switch string(v) {
	case "1s":
		return "1s"
	case "1m":
		return "1m"
	case "1h":
		return "1h"
	case "100ms":
		return "100ms"
	case "1m0s":
		return "1m0s"
	case "1h0m0s":
		return "1h0m0s"
	case "local":
		return "local"
	case "gossip":
		return "gossip"
	case "owner":
		return "owner"
	case "auto":
		return "auto"
	case "token_bucket":
		return "token_bucket"
	case "leaky_bucket":
		return "leaky_bucket"
	case "fixed_window":
		return "fixed_window"
	case "sliding_window":
		return "sliding_window"
	case "sliding_window_log":
		return "sliding_window_log"
	}
	return string(v)
}
