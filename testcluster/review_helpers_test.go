package testcluster

import (
	"encoding/binary"
	"testing"

	"github.com/sluicerl/sluice/bucket"
	"github.com/sluicerl/sluice/ring"
)

// ownerIn returns the owner of an inline-limit key on a ring of the named
// nodes, computed as every node computes it (cluster's ringKey).
func ownerIn(t *testing.T, c *Cluster, nodes []int, key string, l bucket.Limit) string {
	t.Helper()
	var names []string
	for _, i := range nodes {
		names = append(names, c.Member(i).Name)
	}
	r, err := ring.New(names, ring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	b = binary.BigEndian.AppendUint64(b, uint64(l.Rate))
	b = binary.BigEndian.AppendUint64(b, uint64(l.Period))
	b = binary.BigEndian.AppendUint64(b, uint64(l.Burst))
	b = append(b, key...)
	return r.OwnerBytes(b)
}
