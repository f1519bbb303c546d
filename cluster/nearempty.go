package cluster

import (
	"time"

	"github.com/sluicerl/sluice/bucket"
)

// What a node knows of how empty a key is at its owner, from the lease
// state it keeps per forwarded key (lease.go): so that a fair share it
// falls back to, when the owner cannot be reached, starts near what the
// owner held rather than with a fresh part of the burst.

// hot reports whether this node has checked k at least at the lease
// threshold within the last second: a key whose owner's bucket is likely
// near empty, whose tokens go as fast as they are earned.
func (l *leases) hot(k leaseKey, now int64) bool {
	if !l.on() {
		return false
	}
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ls, ok := sh.m[k]
	return ok && l.isHot(ls, now)
}

// isHot is hot for the lease state ls (its shard locked).
func (l *leases) isHot(ls *lease, now int64) bool {
	return ls.rate >= l.threshold && now-ls.lastCheck < int64(time.Second)
}

// denied records that k's owner denied a check of it at now: the key was
// empty there. Only for a key this node tracks already (no entry is made
// for it: the map's bound stands).
func (l *leases) denied(k leaseKey, now int64) {
	sh := l.shard(&k)
	sh.mu.Lock()
	if ls, ok := sh.m[k]; ok {
		ls.deniedAt = now
	}
	sh.mu.Unlock()
}

// emptyShare reports, for a fair share of k falling back from its owner,
// the level the share starts from if this node knows the key near empty
// at its owner: 0 if it is hot here (its tokens go as fast as they are
// earned), or what the share has earned since the owner last denied it,
// when that is less than the share's burst. The level is in tokens of a
// token or leaky bucket; windowed limits are never noted (denied).
func (l *leases) emptyShare(k leaseKey, share bucket.Limit, now int64) (int64, bool) {
	if !l.on() {
		return 0, false
	}
	sh := l.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ls, ok := sh.m[k]
	switch {
	case !ok:
		return 0, false
	case l.isHot(ls, now):
		return 0, true
	case ls.deniedAt == 0 || share.Period <= 0:
		return 0, false
	}
	earned := float64(share.Rate) * float64(now-ls.deniedAt) / float64(share.Period)
	if earned >= float64(share.Burst) {
		return 0, false
	}
	return int64(earned), true
}
