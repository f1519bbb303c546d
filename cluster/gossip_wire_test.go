package cluster

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/rules"
)

func TestTotalsRoundTrip(t *testing.T) {
	var ups []totalUpdate
	for i := range 300 {
		u := totalUpdate{Sync: rules.SyncGossip, ID: bucket.ID{Rule: "api", Key: "user:" + strconv.Itoa(i)},
			Limit: totalLimit, Gen: 1<<60 + uint64(i), Total: int64(i) * 1000}
		if i%3 == 0 {
			u.Sync, u.ID = rules.SyncAuto, bucket.ID{Inline: totalLimit, Key: strings.Repeat("k", i)}
		}
		ups = append(ups, u)
	}
	packets := encodeTotals("node-1", ups, 1024)
	if len(packets) < 2 {
		t.Fatalf("300 updates fit in %d packet(s) of 1 KiB", len(packets))
	}
	var got []totalUpdate
	for _, p := range packets {
		if len(p) > 1024 {
			t.Fatalf("packet of %d bytes, over 1024", len(p))
		}
		cp, err := decodeTotals(p)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Origin != "node-1" {
			t.Fatalf("origin %q", cp.Origin)
		}
		got = append(got, cp.Updates...)
	}
	if !reflect.DeepEqual(got, ups) {
		t.Fatal("updates changed on the way")
	}
}

func TestTotalsRejects(t *testing.T) {
	good := encodeTotals("n", []totalUpdate{{Sync: rules.SyncGossip, ID: bucket.ID{Rule: "r", Key: "k"}, Limit: totalLimit, Gen: 1, Total: 5}}, 1024)[0]
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
		"owner":     encodeTotals("n", []totalUpdate{{Sync: rules.SyncOwner, ID: bucket.ID{Rule: "r", Key: "k"}, Limit: totalLimit, Gen: 1}}, 1024)[0],
		"bad limit": encodeTotals("n", []totalUpdate{{Sync: rules.SyncGossip, ID: bucket.ID{Rule: "r", Key: "k"}, Gen: 1}}, 1024)[0],
		"negative":  encodeTotals("n", []totalUpdate{{Sync: rules.SyncGossip, ID: bucket.ID{Rule: "r", Key: "k"}, Limit: totalLimit, Total: -1}}, 1024)[0],
		"no origin": encodeTotals("", []totalUpdate{{Sync: rules.SyncGossip, ID: bucket.ID{Rule: "r", Key: "k"}, Limit: totalLimit}}, 1024)[0],
	} {
		if _, err := decodeTotals(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func FuzzTotals(f *testing.F) {
	f.Add(encodeTotals("n", []totalUpdate{
		{Sync: rules.SyncGossip, ID: bucket.ID{Rule: "r", Key: "k"}, Limit: totalLimit, Gen: 1, Total: 5},
		{Sync: rules.SyncAuto, ID: bucket.ID{Inline: totalLimit, Key: "k"}, Limit: totalLimit, Gen: 2, Total: 0},
	}, 1024)[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeTotals(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to a packet that decodes the same.
		again, err := decodeTotals(encodeTotals(p.Origin, p.Updates, 1<<20)[0])
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("re-encoded packet differs: %v\n%+v\n%+v", err, again, p)
		}
	})
}
