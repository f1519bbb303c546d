package rules

import (
	"errors"
	"reflect"
	"testing"
)

// TestPersistSurvivesReopen stores a catalog's entries, closes the
// database, opens it again as after a restart, and gets the same rules.
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
