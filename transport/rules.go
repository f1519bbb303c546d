package transport

import (
	"net/http"

	"github.com/sluicerl/sluice/cluster"
	"github.com/sluicerl/sluice/rules"
)

// RulesAPI changes and lists the rules of a node (a *cluster.Node).
// Changes travel to the whole cluster.
type RulesAPI interface {
	// PutRules sets rules (all or none); errors for bad specs are
	// *rules.FieldError, and cluster.ErrRulesReadOnly on a node that
	// cannot store them.
	PutRules(specs []rules.Spec) ([]rules.Entry, error)
	// DeleteRule deletes an API rule; the error wraps rules.ErrNoRule if
	// there is none of that name.
	DeleteRule(name string) (rules.Entry, error)
	// RulesInForce lists the rules in force.
	RulesInForce() []rules.Rule
	// Ready reports whether the rules are loaded; before that GET answers
	// 503, as the checks do (and PutRules and DeleteRule return
	// cluster.ErrNotReady).
	Ready() bool
}

// RuleView is a rule as GET /v1/rules shows it.
type RuleView struct {
	rules.Spec
	// Origin is "file" or "api".
	Origin string `json:"origin"`
	// Version is an API rule's version.
	Version *rules.Version `json:"version,omitempty"`
}

// putRulesJSON is the body of PUT /v1/rules: one rule, or a list.
type putRulesJSON struct {
	Rules *[]rules.Spec `json:"rules"`
	rules.Spec
}

// maxRulesPerPut bounds the rules one PUT may set.
const maxRulesPerPut = 1000

func (s *Server) listRules(w http.ResponseWriter, _ *http.Request) int {
	if !s.cfg.Rules.Ready() {
		return s.fail(w, cluster.ErrNotReady)
	}
	return writeValue(w, http.StatusOK, map[string]any{"rules": RuleViews(s.cfg.Rules.RulesInForce())})
}

func (s *Server) putRules(w http.ResponseWriter, r *http.Request) int {
	var body putRulesJSON
	if err := s.decode(w, r, s.cfg.MaxBodyBytes*16, s.rulesBody, &body); err != nil {
		return s.fail(w, err)
	}
	var specs []rules.Spec
	single := body.Spec.Name != "" || body.Spec.Limit != 0 || body.Spec.Period != ""
	name := r.PathValue("name")
	switch {
	case body.Rules != nil && single:
		return s.fail(w, badField("rules", "give one rule, or a list in rules, not both"))
	case body.Rules != nil && name != "":
		return s.fail(w, badField("rules", "PUT /v1/rules/{name} takes one rule; send a list to /v1/rules"))
	case body.Rules != nil:
		specs = *body.Rules
	default:
		if name != "" {
			if body.Spec.Name == "" {
				body.Spec.Name = name
			} else if body.Spec.Name != name {
				return s.fail(w, badField("name", "%q does not match the rule in the path, %q", body.Spec.Name, name))
			}
		}
		specs = []rules.Spec{body.Spec}
	}
	if len(specs) == 0 {
		return s.fail(w, badField("rules", "is empty"))
	}
	if len(specs) > maxRulesPerPut {
		return s.fail(w, badField("rules", "%d rules, more than %d in one request", len(specs), maxRulesPerPut))
	}
	entries, err := s.cfg.Rules.PutRules(specs)
	if err != nil {
		return s.fail(w, err)
	}
	return writeValue(w, http.StatusOK, map[string]any{"rules": entries})
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request) int {
	e, err := s.cfg.Rules.DeleteRule(r.PathValue("name"))
	if err != nil {
		return s.fail(w, err)
	}
	return writeValue(w, http.StatusOK, map[string]any{"deleted": e})
}
