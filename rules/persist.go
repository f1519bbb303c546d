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

// PersistFile is the name of the database file in a node's data directory.
const PersistFile = "rules.db"

// lockTimeout is how long OpenPersist waits for another process to release
// the database.
const lockTimeout = 2 * time.Second

// ErrCorrupt reports a database that is damaged: empty, not a database, or
// with pages or records that do not read. Errors that wrap it name the file.
var ErrCorrupt = errors.New("rules database is damaged")

// ErrLocked reports a database that another process holds open.
var ErrLocked = errors.New("rules database is held by another process")

// OpenPersist opens the database in dir, creating dir and the database if
// there is none: a fresh start. It reads the whole database before
// returning, so damage shows now and not at the first write: an error then
// wraps ErrCorrupt, and the file is left as it was (see MoveAside). A file
// of zero bytes counts as damaged, because a database is never empty: what
// it held is lost. An error wraps ErrLocked if another process holds the
// database for more than 2s.
func OpenPersist(dir string) (*Persist, error) { return openPersist(dir, lockTimeout) }

func openPersist(dir string, timeout time.Duration) (*Persist, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, PersistFile)
	// bbolt would silently start a new database in an empty file. This
	// looks before taking the lock: a process creating the database at
	// this very instant (another node given the same directory) makes it
	// look empty for microseconds.
	if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Size() == 0 {
		return nil, fmt.Errorf("open %s: %w: the file is empty (0 bytes), so whatever it held is lost", path, ErrCorrupt)
	}
	db, err := openChecked(path, timeout)
	if err != nil {
		return nil, err
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
			e, err := decodeEntry(k, v)
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			out = append(out, e)
			return nil
		})
	})
	return out, errors.Join(err, errors.Join(errs...))
}

// decodeEntry decodes the record stored under name k.
func decodeEntry(k, v []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return e, fmt.Errorf("stored rule %q does not decode: %w", k, err)
	}
	if e.Name != string(k) {
		return e, fmt.Errorf("stored rule %q holds rule %q", k, e.Name)
	}
	return e, nil
}

// Close closes the database.
func (p *Persist) Close() error { return p.db.Close() }
