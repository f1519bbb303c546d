package cluster

import (
	"errors"
	"sync"
	"time"
)

// stalls are the owners that did not answer a forwarded check in time (a
// frozen process, a long pause, a stalled VM: connected, but silent).
// Their keys are decided from this node's fair share at once, without
// waiting on them again; one check at a time is let through as a probe,
// after a backoff that doubles from minStall to maxStall, until one is
// answered. It is safe for concurrent use.
type stalls struct {
	mu sync.Mutex // guards m
	m  map[string]*stall
}

// stall is one silent owner.
type stall struct {
	next    time.Time     // the earliest next probe
	backoff time.Duration // until next, after the last probe failed
	probing bool          // a probe is in flight
}

const (
	minStall = 100 * time.Millisecond
	maxStall = 2 * time.Second
)

// errStalled is an owner that is not asked now: it did not answer in time.
var errStalled = errors.New("owner did not answer in time; not asked again until a probe is answered")

// ask reports whether a check may be sent to owner now, and whether it is
// the probe: always, unless the owner is stalled; then only as the one
// probe, once its backoff is over.
func (s *stalls) ask(owner string, now time.Time) (ok, probe bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[owner]
	if st == nil {
		return true, false
	}
	if st.probing || now.Before(st.next) {
		return false, false
	}
	st.probing = true
	return true, true
}

// timedOut records that owner did not answer within the forward timeout,
// and reports whether it was answering until now. Only the probe's
// timeout lengthens the backoff: checks sent before the owner was marked
// stalled time out together, and are one failure, not many.
func (s *stalls) timedOut(owner string, now time.Time, probe bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[owner]
	switch {
	case st == nil:
		if s.m == nil {
			s.m = map[string]*stall{}
		}
		s.m[owner] = &stall{next: now.Add(minStall), backoff: minStall}
		return true
	case probe:
		st.backoff = min(st.backoff*2, maxStall)
		st.next, st.probing = now.Add(st.backoff), false
	}
	return false
}

// answered records that owner answered (or failed at once, which is not a
// stall: the peer client fails fast on a peer it cannot reach).
func (s *stalls) answered(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, owner)
}

// abandoned records that a check sent to owner was given up by its caller
// before any answer: if it was the probe, the next check may probe.
func (s *stalls) abandoned(owner string, probe bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.m[owner]; st != nil && probe {
		st.probing = false
	}
}
