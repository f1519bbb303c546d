package rules

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCommitFailureChangesNothing(t *testing.T) {
	c := NewCatalog("a")
	fail := func([]Entry) error { return errors.New("disk full") }
	if _, err := c.Put([]Spec{spec("x", 1)}, fail); err == nil {
		t.Fatal("Put succeeded although its commit failed")
	}
	if len(c.Entries()) != 0 {
		t.Fatalf("a failed commit left %+v", c.Entries())
	}
	c.Put([]Spec{spec("x", 1)}, nil)
	if _, err := c.Delete("x", fail); err == nil || c.Entries()[0].Deleted {
		t.Fatalf("Delete with a failed commit: %v, %+v", err, c.Entries())
	}
	if _, err := c.Delete("nope", nil); !errors.Is(err, ErrNoRule) {
		t.Fatalf("deleting an unknown rule: %v, want ErrNoRule", err)
	}
}

// TestPersistSurvivesReopen stores a catalog's entries, closes the
// database, opens it again as after a restart, and gets the same rules.
func TestPersistSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPersist(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCatalog("a")
	put, _ := c.Put([]Spec{spec("x", 1), spec("y", 2), {Name: "z", Limit: 3, Period: "1m", Sync: "owner",
		Descriptors: []DescriptorSpec{{Key: "user"}, {Key: "route", Value: "/api"}}}}, p.Save)
	del, _ := c.Delete("y", p.Save)
	// A save that arrives late with an older version changes nothing.
	if err := p.Save(put[1:2]); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	p, err = OpenPersist(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	loaded, err := p.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, c.Entries()) {
		t.Fatalf("after reopening:\n%+v\nwant\n%+v", loaded, c.Entries())
	}
	restarted := NewCatalog("a")
	restarted.Merge(loaded)
	if set := restarted.Combine(nil); set.Len() != 2 || set.byName["z"].Sync != SyncOwner {
		t.Fatalf("rules in force after restart: %+v", set.Rules())
	}
	// The restarted node's clock continues past what it had stored.
	if es, _ := restarted.Put([]Spec{spec("w", 1)}, nil); es[0].Version.Clock <= del.Version.Clock {
		t.Fatalf("clock went back after restart: %d <= %d", es[0].Version.Clock, del.Version.Clock)
	}
}

// storedDB returns the bytes of a database holding 50 rules: enough for the
// rules bucket to span several pages under a branch page.
func storedDB(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	p, err := OpenPersist(dir)
	if err != nil {
		t.Fatal(err)
	}
	var specs []Spec
	for i := range 50 {
		specs = append(specs, spec(fmt.Sprintf("rule-%03d", i), int64(i+1)))
	}
	if _, err := NewCatalog("a").Put(specs, p.Save); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, PersistFile))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Offsets in a bbolt page: the header (id u64, flags u16, count u16,
// overflow u32), then, in a meta page, magic, version, page size, flags,
// root bucket (page, sequence), free list page, high water mark, txid.
const (
	pageFlags      = 8
	metaPageSize   = 24
	metaFreelist   = 48
	metaTxid       = 64
	pageHeaderSize = 16
	leafPage       = 0x02
	branchPage     = 0x01
)

// garble overwrites b[from:to] with a fixed pattern that is no valid page.
func garble(b []byte, from, to int) {
	for i := from; i < to; i++ {
		b[i] = byte(i*13 + 5)
	}
}

// pages returns the page size and the current meta page (highest txid).
func pages(db []byte) (size int, meta []byte) {
	size = int(binary.LittleEndian.Uint32(db[metaPageSize:]))
	meta = db[:size]
	if m1 := db[size : 2*size]; binary.LittleEndian.Uint64(m1[metaTxid:]) > binary.LittleEndian.Uint64(meta[metaTxid:]) {
		meta = m1
	}
	return size, meta
}

// TestPersistRefusesDamage damages a database in each way bbolt reacts to
// differently (an error, a panic while opening, a panic while reading, no
// reaction until a write) and opens it: every one is refused with an error
// wrapping ErrCorrupt that names the file, never a panic, and the file is
// left as it was. MoveAside then keeps it, byte for byte, under a new name,
// and the next open starts an empty database.
func TestPersistRefusesDamage(t *testing.T) {
	stored := storedDB(t)
	for _, tc := range []struct {
		name   string
		damage func(db []byte) []byte
		want   string
	}{
		{"empty", func([]byte) []byte { return []byte{} }, "empty (0 bytes)"},
		{"not a database", func([]byte) []byte { return bytes.Repeat([]byte("sluice "), 3000) }, "invalid database"},
		{"truncated", func(db []byte) []byte { return db[:100] }, "invalid database"},
		{"pages after the metas", func(db []byte) []byte { // the report in issue 17
			size, _ := pages(db)
			garble(db, 2*size, len(db))
			return db
		}, "invalid freelist page"},
		{"tree pages", func(db []byte) []byte { // bbolt panics walking the rules
			size, _ := pages(db)
			for pg := 2 * size; pg < len(db); pg += size {
				if f := binary.LittleEndian.Uint16(db[pg+pageFlags:]); f == leafPage || f == branchPage {
					garble(db, pg+pageHeaderSize, pg+size)
				}
			}
			return db
		}, "bbolt: "},
		{"free list", func(db []byte) []byte { // only bbolt's check finds it; a write would use pages in use
			size, meta := pages(db)
			pg := int(binary.LittleEndian.Uint64(meta[metaFreelist:])) * size
			garble(db, pg+pageHeaderSize, pg+size)
			return db
		}, "unreachable unfreed"},
		{"a record", func(db []byte) []byte {
			i := bytes.Index(db, []byte(`{"name":"rule-007"`))
			copy(db[i:], "not json")
			return db
		}, `stored rule "rule-007" does not decode`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, PersistFile)
			damaged := tc.damage(bytes.Clone(stored))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := OpenPersist(dir)
			if err == nil {
				p.Close()
				t.Fatal("opened a damaged database")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrCorrupt naming %s and saying %q", err, path, tc.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
				t.Fatal("a refused open changed the file")
			}

			now := time.Unix(1_700_000_000, 0)
			moved, err := MoveAside(dir, now)
			if err != nil {
				t.Fatal(err)
			}
			if want := path + ".corrupt-1700000000"; moved != want {
				t.Fatalf("moved to %s, want %s", moved, want)
			}
			if kept, _ := os.ReadFile(moved); !bytes.Equal(kept, damaged) {
				t.Fatal("the file moved aside is not the damaged file")
			}
			p, err = OpenPersist(dir)
			if err != nil {
				t.Fatalf("open after moving the damaged file aside: %v", err)
			}
			defer p.Close()
			if loaded, err := p.Load(); err != nil || len(loaded) != 0 {
				t.Fatalf("a new database holds %v, %v", loaded, err)
			}
			if _, err := NewCatalog("a").Put([]Spec{spec("x", 1)}, p.Save); err != nil {
				t.Fatalf("store in the new database: %v", err)
			}
		})
	}
}

// TestMoveAsideKeepsEarlierFiles moves a damaged file aside twice in one
// second: the second gets a name of its own.
func TestMoveAsideKeepsEarlierFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PersistFile)
	now := time.Unix(1_700_000_000, 0)
	var moved []string
	for _, content := range []string{"first", "second"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := MoveAside(dir, now)
		if err != nil {
			t.Fatal(err)
		}
		moved = append(moved, m)
	}
	if moved[0] == moved[1] {
		t.Fatalf("both moved to %s", moved[0])
	}
	for i, content := range []string{"first", "second"} {
		if got, _ := os.ReadFile(moved[i]); string(got) != content {
			t.Fatalf("%s holds %q, want %q", moved[i], got, content)
		}
	}
}

// TestPersistLockedIsNotDamage opens a database that is already open: the
// error says it is held, not damaged, and nothing is touched.
func TestPersistLockedIsNotDamage(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPersist(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = openPersist(dir, 50*time.Millisecond)
	if !errors.Is(err, ErrLocked) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Join(dir, PersistFile)) {
		t.Fatalf("second open: %v, want ErrLocked naming the file", err)
	}
}

func TestClusterSizeSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPersist(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, at, err := p.ClusterSize(); err != nil || n != 0 || !at.IsZero() {
		t.Fatalf("fresh database: ClusterSize() = %d, %v, %v; want 0, zero time, nil", n, at, err)
	}
	at := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	if err := p.SaveClusterSize(5, at); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if p, err = OpenPersist(dir); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, got, err := p.ClusterSize(); err != nil || n != 5 || !got.Equal(at) {
		t.Fatalf("after reopening: ClusterSize() = %d, %v, %v; want 5, %v, nil", n, got, err, at)
	}
	if entries, err := p.Load(); err != nil || len(entries) != 0 {
		t.Fatalf("the size is not a rule: Load() = %v, %v", entries, err)
	}
}
