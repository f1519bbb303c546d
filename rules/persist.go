package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Persist keeps a node's catalog of API rules on disk, in an embedded bbolt
// database under the node's data directory, so that rules set through the
// API survive a restart of every node at once. Writes are durable (fsync)
// before the API answers. It is safe for concurrent use.
type Persist struct {
	db *bolt.DB
}

var bucketRules = []byte("api-rules")

// OpenPersist opens (creating it if needed) the database in dir.
func OpenPersist(dir string) (*Persist, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, "rules.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketRules)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &Persist{db: db}, nil
}

// Save stores entries, replacing older versions of the same rules; a stored
// version newer than the one given stays, so saves may arrive in any order.
func (p *Persist) Save(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	return p.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRules)
		for _, e := range entries {
			var old Entry
			if v := b.Get([]byte(e.Name)); v != nil && json.Unmarshal(v, &old) == nil && old.Version.Compare(e.Version) >= 0 {
				continue
			}
			v, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode rule %q: %w", e.Name, err)
			}
			if err := b.Put([]byte(e.Name), v); err != nil {
				return fmt.Errorf("store rule %q: %w", e.Name, err)
			}
		}
		return nil
	})
}

// Load returns every stored entry, tombstones included. A record that does
// not decode is reported, not skipped silently.
func (p *Persist) Load() ([]Entry, error) {
	var out []Entry
	var errs []error
	err := p.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRules).ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil || e.Name != string(k) {
				errs = append(errs, fmt.Errorf("stored rule %q does not decode: %v", k, err))
				return nil
			}
			out = append(out, e)
			return nil
		})
	})
	return out, errors.Join(err, errors.Join(errs...))
}

// Close closes the database.
func (p *Persist) Close() error { return p.db.Close() }
