package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// Peer frames: a 4-byte big-endian length (of what follows), a type byte,
// and a msgpack body. Bodies are arrays with short, fixed layouts whose
// positions are named below, encoded and decoded by hand (peer_frames.go):
// no reflection on the hot path, and every length is checked before
// anything is allocated. A limit is coded as cluster.EncodeLimit codes it
// in every sluice message.
const (
	frameCheckBatch       byte = 1 // peerBatch: checks for the owner
	frameCheckBatchResult byte = 2 // peerBatchResult: its answers, in order
	frameHandoff          byte = 3 // peerHandoff: buckets whose owner this node now is
	frameHandoffAck       byte = 4 // peerHandoffAck: they are merged
	frameGoAway           byte = 5 // peerGoAway: the server asks the client to close the connection

	// maxFrameBytes bounds a frame; a longer one closes the connection.
	maxFrameBytes = 1 << 20
	// maxRuleBytes bounds a rule name on the wire.
	maxRuleBytes = 256
)

// A check batch is [id, [check...]]; a check, an array with these
// positions. A reservation (OpReserve) has one more: its wait.
const (
	checkRule   = iota
	checkInline // [0,0,0] for a named rule's bucket
	checkKey
	checkLimit
	checkCost
	checkSync
	checkOp
	checkFields   // a check that is not a reservation
	reserveFields // checkFields and the wait
)

// A result is [id, [decision...]]; a decision, an array of integers with
// these positions (booleans as 0 or 1).
const (
	decAllowed = iota
	decRemaining
	decResetAfter
	decRetryAfter
	decTooLarge
	decLimit
	decGranted
	decWait
	decisionFields
)

// A handoff is [id, sync, [entry...]]; an entry, an array with these
// positions. Its ack is the id alone.
const (
	entryRule = iota
	entryInline
	entryKey
	entryLimit
	entryTokens
	entryFrac
	entryFields
)

// errMalformed is a frame that does not decode. The connection it came on
// is closed and the frame counted.
var errMalformed = errors.New("transport: malformed peer frame")

// peerBatch is a batch of checks for one owner, under one request id.
type peerBatch struct {
	id     uint64
	checks []cluster.PeerCheck
	traces []peerTrace // the span contexts the checks came under (peer_trace.go)
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

// peerGoAway asks the client to close the connection it comes on: the
// server answered every batch up to id (the last it answered, 0 for none)
// and decides none after it, so the client sends the batches it has no
// answer to again on another connection. Its body is an id alone, coded
// as a handoff ack's.
type peerGoAway struct{ peerHandoffAck }

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
func (w *frameWriter) write(dst io.Writer, t byte, body interface{ encode(*msgpack.Encoder) }) error {
	w.buf.Reset()
	w.buf.Write([]byte{0, 0, 0, 0, t})
	w.enc.Reset(&w.buf)
	w.enc.UseCompactInts(true) // Reset clears options
	body.encode(w.enc)         // writes to a bytes.Buffer do not fail
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
