package transport

import (
	"net/http"
	"time"

	"github.com/sluicerl/sluice/gossip"
)

// ClusterView is a node's view of its cluster, as GET /v1/cluster shows it.
type ClusterView struct {
	// Self is this node's name ("" when it stands alone).
	Self    string       `json:"self"`
	Members []MemberView `json:"members"`
	// Counts is the number of members by state.
	Counts map[string]int `json:"counts"`
}

// MemberView is one member in a ClusterView.
type MemberView struct {
	Name        string    `json:"name"`
	Addr        string    `json:"addr"`
	PeerAddr    string    `json:"peer_addr,omitempty"`
	State       string    `json:"state"`
	Since       time.Time `json:"since"`
	Incarnation int64     `json:"incarnation"`
	Self        bool      `json:"self,omitempty"`
}

// Membership describes a node's cluster (a *cluster.Node). Its methods
// do not block.
type Membership interface {
	// Name is the node's name ("" when it stands alone).
	Name() string
	// Members are the members it sees, itself included; none when alone.
	Members() []gossip.Member
}

// NewClusterView describes the cluster as m sees it.
func NewClusterView(m Membership) ClusterView {
	v := ClusterView{Self: m.Name(), Members: []MemberView{}, Counts: map[string]int{}}
	for _, mb := range m.Members() {
		v.Members = append(v.Members, MemberView{
			Name:        mb.Name,
			Addr:        mb.Addr,
			PeerAddr:    mb.Meta.PeerAddr,
			State:       mb.State.String(),
			Since:       mb.Since,
			Incarnation: mb.Meta.Incarnation,
			Self:        mb.Self,
		})
		v.Counts[mb.State.String()]++
	}
	return v
}

func (s *Server) cluster(w http.ResponseWriter, _ *http.Request) int {
	return writeValue(w, http.StatusOK, NewClusterView(s.cfg.Membership))
}
