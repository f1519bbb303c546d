package rules

import (
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func spec(name string, limit int64) Spec { return Spec{Name: name, Limit: limit, Period: "1s"} }

func TestCatalogPutIsAllOrNothing(t *testing.T) {
	c := NewCatalog("a")
	_, err := c.Put([]Spec{spec("ok", 1), {Name: "bad", Limit: 0, Period: "1s"}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "rules[1](bad).limit:") {
		t.Fatalf("Put with a bad rule: %v, want an error naming rules[1](bad).limit", err)
	}
	if n := len(c.Entries()); n != 0 {
		t.Fatalf("a rejected Put stored %d entries", n)
	}
	if _, err := c.Put([]Spec{spec("x", 1), spec("x", 2)}, nil); err == nil {
		t.Fatal("a name given twice must be refused")
	}
	es, err := c.Put([]Spec{spec("x", 1), spec("y", 2)}, nil)
	if err != nil || es[0].Version != (Version{1, "a"}) || es[1].Version != (Version{2, "a"}) {
		t.Fatalf("Put: %+v %v", es, err)
	}
}

func TestCatalogDeleteLeavesATombstone(t *testing.T) {
	a, b := NewCatalog("a"), NewCatalog("b")
	put, _ := a.Put([]Spec{spec("x", 1)}, nil)
	b.Merge(put)
	del, err := a.Delete("x", nil)
	if err != nil || !del.Deleted {
		t.Fatalf("Delete: %+v %v", del, err)
	}
	if _, err := a.Delete("x", nil); err == nil {
		t.Fatal("deleting a deleted rule must fail")
	}
	// The older copy that b still holds arrives after the deletion: it must
	// not bring the rule back.
	if changed := a.Merge(b.Entries()); len(changed) != 0 {
		t.Fatalf("an older copy changed the catalog: %+v", changed)
	}
	if set := a.Combine(nil); set.Len() != 0 {
		t.Fatal("a deleted rule is in force")
	}
}

func TestCatalogLamportClock(t *testing.T) {
	a, b := NewCatalog("a"), NewCatalog("b")
	for range 5 {
		a.Put([]Spec{spec("x", 1)}, nil)
	}
	b.Merge(a.Entries()) // b learns clock 5
	es, _ := b.Put([]Spec{spec("x", 2)}, nil)
	if es[0].Version.Clock != 6 {
		t.Fatalf("a change after seeing clock 5 got clock %d, want 6", es[0].Version.Clock)
	}
	if a.Merge(b.Entries()); a.Combine(nil).byName["x"].Limit.Rate != 2 {
		t.Fatal("the later change lost")
	}
}

func TestCatalogSkipsInvalidPeerEntries(t *testing.T) {
	c := NewCatalog("a")
	bad := Spec{Name: "x", Limit: -1, Period: "1s"}
	if changed := c.Merge([]Entry{{Name: "x", Spec: &bad, Version: Version{9, "evil"}}, {Name: "y", Version: Version{9, "evil"}}}); len(changed) != 0 {
		t.Fatalf("invalid entries merged: %+v", changed)
	}
}

func TestCatalogCombineWithFile(t *testing.T) {
	file, err := Parse([]byte("rules: [{name: a, limit: 1, period: 1s}, {name: b, limit: 2, period: 1s}]"))
	if err != nil {
		t.Fatal(err)
	}
	c := NewCatalog("n")
	c.Put([]Spec{spec("b", 20), spec("c", 30)}, nil)
	set := c.Combine(file)
	if set.Len() != 3 || set.byName["b"].Limit.Rate != 20 || set.byName["c"].Limit.Rate != 30 {
		t.Fatalf("combined: %+v", set.Rules())
	}
	c.Delete("b", nil) // the file's b is in force again
	if set := c.Combine(file); set.byName["b"].Limit.Rate != 2 {
		t.Fatalf("after deleting the API rule b: %+v", set.byName["b"])
	}
}

// TestCatalogsConverge makes random changes on three nodes, then lets each
// node merge every other's state in a random order: all three must end
// with the same entries.
func TestCatalogsConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := []*Catalog{NewCatalog("a"), NewCatalog("b"), NewCatalog("c")}
		names := []string{"x", "y", "z"}
		for range rapid.IntRange(1, 30).Draw(t, "ops") {
			n := nodes[rapid.IntRange(0, 2).Draw(t, "node")]
			name := names[rapid.IntRange(0, 2).Draw(t, "name")]
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				n.Put([]Spec{spec(name, rapid.Int64Range(1, 100).Draw(t, "limit"))}, nil)
			case 1:
				n.Delete(name, nil)
			case 2: // a partial exchange midway
				n.Merge(nodes[rapid.IntRange(0, 2).Draw(t, "from")].Entries())
			}
		}
		order := rapid.Permutation([]int{0, 1, 2}).Draw(t, "order")
		for range 2 { // two rounds reach everyone
			for _, i := range order {
				for _, j := range order {
					nodes[i].Merge(nodes[j].Entries())
				}
			}
		}
		for _, n := range nodes[1:] {
			if !reflect.DeepEqual(n.Entries(), nodes[0].Entries()) {
				t.Fatalf("catalogs differ:\n%+v\n%+v", nodes[0].Entries(), n.Entries())
			}
		}
	})
}
