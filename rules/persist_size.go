package rules

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The node's own state beside its rules: the size its cluster was last
// remembered to have, so that a node that restarts decides cluster-wide
// keys at its share of them until it has found its peers again.
var (
	bucketNode     = []byte("node")
	keyClusterSize = []byte("cluster-size")
)

type clusterSize struct {
	Members int64     `json:"members"`
	At      time.Time `json:"at"`
}

// SaveClusterSize stores that the node's cluster was remembered to have
// members members at at.
func (p *Persist) SaveClusterSize(members int64, at time.Time) error {
	v, err := json.Marshal(clusterSize{Members: members, At: at.UTC()})
	if err != nil {
		return err
	}
	return p.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNode)
		if err != nil {
			return err
		}
		return b.Put(keyClusterSize, v)
	})
}

// ClusterSize returns the last size stored by SaveClusterSize and when it
// was remembered; 0 members if none was.
func (p *Persist) ClusterSize() (int64, time.Time, error) {
	var s clusterSize
	err := p.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNode)
		if b == nil {
			return nil
		}
		v := b.Get(keyClusterSize)
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("stored cluster size does not decode: %w", err)
		}
		return nil
	})
	return s.Members, s.At, err
}
