package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// maxCheckErrors bounds the consistency errors quoted in a damage report.
const maxCheckErrors = 3

// openChecked opens the bbolt database at path and reads all of it. bbolt
// panics on many kinds of damage (a page that is not what its parent says,
// "invalid freelist page"); those panics, and memory faults on pages past
// the end of a short file, are recovered here and reported as ErrCorrupt.
// A recovered panic inside bolt.Open leaves bbolt's memory map of the file
// behind: one small mapping, once, on a path that ends in the node stopping
// or setting the file aside.
func openChecked(path string, timeout time.Duration) (db *bolt.DB, err error) {
	var file *os.File // bbolt's file, to release its lock if bolt.Open panics
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			} else if file != nil {
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("open %s: %w: bbolt: %v", path, ErrCorrupt, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open %s: %w (waited %v for its lock)", path, ErrLocked, timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open %s: %w: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.View(verify); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("check %s: %w: %w", path, ErrCorrupt, err)
	}
	return db, nil
}

// verify reads every bucket and record, then runs bbolt's consistency check
// (which finds a damaged free list, and so pages a later write would
// overwrite). The walk comes first because it runs on the caller's
// goroutine, where a panic is recovered; tx.Check runs on a goroutine of its
// own, where a panic would crash the process, so it only reads pages the walk
// has read.
func verify(tx *bolt.Tx) error {
	if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return walk(b, string(name) == string(bucketRules))
	}); err != nil {
		return err
	}
	var errs []error
	n := 0
	for err := range tx.Check() { // drain it: its goroutine ends when we have read everything
		if n++; n <= maxCheckErrors {
			errs = append(errs, err)
		}
	}
	if n > maxCheckErrors {
		errs = append(errs, fmt.Errorf("and %d more inconsistencies", n-maxCheckErrors))
	}
	return errors.Join(errs...)
}

// walk reads every record of b and of the buckets nested in it. If entries
// is set, b is the rules bucket and its records must decode.
func walk(b *bolt.Bucket, entries bool) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				return walk(nested, false)
			}
			return nil
		}
		if entries {
			_, err := decodeEntry(k, v)
			return err
		}
		return nil
	})
}

// MoveAside renames the damaged database in dir to
// rules.db.corrupt-<now in Unix seconds> (with a further suffix if that name
// is taken), so that the next OpenPersist starts an empty database. The file
// is never deleted: what it held may still be read from it. It returns the
// new path.
func MoveAside(dir string, now time.Time) (string, error) {
	path := filepath.Join(dir, PersistFile)
	base := path + ".corrupt-" + strconv.FormatInt(now.Unix(), 10)
	for i := 1; ; i++ {
		moved := base
		if i > 1 {
			moved = base + "-" + strconv.Itoa(i)
		}
		if _, err := os.Lstat(moved); !errors.Is(err, fs.ErrNotExist) {
			if err != nil {
				return "", fmt.Errorf("move %s aside: %w", path, err)
			}
			continue // taken: never overwrite an earlier damaged file
		}
		if err := os.Rename(path, moved); err != nil {
			return "", fmt.Errorf("move %s aside: %w", path, err)
		}
		return moved, nil
	}
}
