package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

var (
	wireLimit   = bucket.Limit{Rate: 10, Period: time.Second, Burst: 20}
	windowLimit = bucket.Limit{Rate: 10, Period: time.Minute, Burst: 10, Algo: bucket.SlidingWindow}
	leakyLimit  = bucket.Limit{Rate: 10, Period: time.Second, Burst: 5, Algo: bucket.LeakyBucket}
)

func TestPeerFramesRoundTrip(t *testing.T) {
	batch := &peerBatch{id: 7, checks: []cluster.PeerCheck{
		{ID: bucket.ID{Rule: "api", Key: "user:1"}, Limit: wireLimit, Cost: 1},
		{ID: bucket.ID{Inline: wireLimit, Key: "ip:10.0.0.1"}, Limit: wireLimit, Cost: 0, Sync: rules.SyncAuto},
		{ID: bucket.ID{Rule: "api", Key: "user:2"}, Limit: wireLimit, Cost: 2, Sync: rules.SyncOwner},
		{ID: bucket.ID{Inline: windowLimit, Key: "w"}, Limit: windowLimit, Cost: 1, Sync: rules.SyncOwner},
		{ID: bucket.ID{Rule: "shape", Key: "s"}, Limit: leakyLimit, Cost: 1, Sync: rules.SyncOwner, Op: cluster.OpReserve, MaxWait: 2 * time.Second},
	}}
	result := &peerBatchResult{id: 7, decisions: []bucket.Decision{
		{Allowed: true, Limit: 10, Remaining: 19, ResetAfter: 100 * time.Millisecond},
		{Allowed: false, Limit: 10, RetryAfter: 3 * time.Second, TooLarge: true},
	}}
	var wire bytes.Buffer
	w := newFrameWriter()
	if err := w.write(&wire, frameCheckBatch, batch); err != nil {
		t.Fatal(err)
	}
	if err := w.write(&wire, frameCheckBatchResult, result); err != nil {
		t.Fatal(err)
	}
	r := newFrameReader()
	typ, dec, err := r.read(&wire)
	if err != nil || typ != frameCheckBatch {
		t.Fatalf("first frame: %d %v", typ, err)
	}
	var gotBatch peerBatch
	if err := gotBatch.decode(dec); err != nil || !reflect.DeepEqual(&gotBatch, batch) {
		t.Fatalf("batch: %+v %v, want %+v", gotBatch, err, batch)
	}
	typ, dec, err = r.read(&wire)
	if err != nil || typ != frameCheckBatchResult {
		t.Fatalf("second frame: %d %v", typ, err)
	}
	var gotResult peerBatchResult
	if err := gotResult.decode(dec); err != nil || !reflect.DeepEqual(&gotResult, result) {
		t.Fatalf("result: %+v %v, want %+v", gotResult, err, result)
	}
}

func TestPeerFrameOverLimitIsRefused(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrameBytes+1)
	if _, _, err := newFrameReader().read(bytes.NewReader(hdr[:])); !errors.Is(err, errMalformed) {
		t.Fatalf("oversized frame: %v", err)
	}
}

func TestPeerBatchRejectsBadValues(t *testing.T) {
	for _, c := range []cluster.PeerCheck{
		{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{}, Cost: 1},
		{ID: bucket.ID{Key: "k"}, Limit: wireLimit, Cost: -1},
		{ID: bucket.ID{Key: string(make([]byte, MaxKeyBytes+1))}, Limit: wireLimit, Cost: 1},
		{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 1, Period: 1, Burst: 1, Algo: 99}, Cost: 1},
		{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 10, Period: 1, Burst: 3, Algo: bucket.FixedWindow}, Cost: 1},
		{ID: bucket.ID{Key: "k"}, Limit: leakyLimit, Cost: 1, Op: cluster.OpReserve, MaxWait: -1},
		// Limits the rules refuse are refused on the wire too.
		{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 200_000, Period: time.Second, Burst: 200_000, Algo: bucket.SlidingWindowLog}, Cost: 1},
		{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 1, Period: time.Microsecond, Burst: 1}, Cost: 1},
		{ID: bucket.ID{Key: "k"}, Limit: bucket.Limit{Rate: 1, Period: 400 * 24 * time.Hour, Burst: 1}, Cost: 1},
	} {
		var wire bytes.Buffer
		newFrameWriter().write(&wire, frameCheckBatch, &peerBatch{id: 1, checks: []cluster.PeerCheck{c}})
		_, dec, err := newFrameReader().read(&wire)
		if err != nil {
			t.Fatal(err)
		}
		var b peerBatch
		if err := b.decode(dec); !errors.Is(err, errMalformed) {
			t.Errorf("check %+v accepted", c)
		}
	}
}

// FuzzPeerFrames feeds arbitrary bytes to the peer frame reader and both
// decoders: no panic, and whatever is accepted respects the bounds.
func FuzzPeerFrames(f *testing.F) {
	var seed bytes.Buffer
	w := newFrameWriter()
	w.write(&seed, frameCheckBatch, &peerBatch{id: 1, checks: []cluster.PeerCheck{{ID: bucket.ID{Rule: "r", Key: "k"}, Limit: wireLimit, Cost: 1}}})
	f.Add(seed.Bytes())
	seed.Reset()
	w.write(&seed, frameCheckBatch, &peerBatch{id: 2, checks: []cluster.PeerCheck{{ID: bucket.ID{Inline: windowLimit, Key: "k"}, Limit: leakyLimit, Cost: 1, Op: cluster.OpReserve, MaxWait: time.Second}}})
	f.Add(seed.Bytes())
	seed.Reset()
	w.write(&seed, frameCheckBatchResult, &peerBatchResult{id: 1, decisions: []bucket.Decision{{Allowed: true, Remaining: 3}}})
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 6, frameCheckBatch, 0x92, 0x01, 0xdd, 0xff, 0xff})                   // an array claiming 4G checks
	f.Add([]byte{0, 0, 0, 9, frameCheckBatch, 0x92, 0x01, 0x91, 0x95, 0xdb, 0xff, 0xff, 0xff}) // a string claiming 4G bytes
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, dec, err := newFrameReader().read(bytes.NewReader(b))
		if err != nil {
			return
		}
		switch typ {
		case frameCheckBatch:
			var pb peerBatch
			if pb.decode(dec) == nil {
				if len(pb.checks) == 0 || len(pb.checks) > MaxBatch {
					t.Fatalf("accepted %d checks", len(pb.checks))
				}
				for _, c := range pb.checks {
					if len(c.ID.Key) > MaxKeyBytes || c.Limit.Validate() != nil || c.Cost < 0 {
						t.Fatalf("accepted %+v", c)
					}
				}
			}
		case frameHandoff:
			var h peerHandoff
			if h.decode(dec) == nil {
				for _, e := range h.entries {
					if e.Limit.Validate() != nil || e.Tokens > e.Limit.Burst || e.Frac < 0 || e.Frac >= int64(e.Limit.Period) {
						t.Fatalf("accepted %+v", e)
					}
				}
			}
		case frameCheckBatchResult:
			var pr peerBatchResult
			if pr.decode(dec) == nil && (len(pr.decisions) == 0 || len(pr.decisions) > MaxBatch) {
				t.Fatalf("accepted %d decisions", len(pr.decisions))
			}
		}
	})
}
