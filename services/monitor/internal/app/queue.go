package app

import (
	"iter"

	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// recentIDsMax bounds the in-process memory of evidence event ids.
const recentIDsMax = 65_536

// recentIDs remembers the last max evidence event ids in process. It
// catches a redelivery after a failed finish before the KV mark exists.
type recentIDs struct {
	ids  map[string]struct{}
	ring []string
	next int
}

func newRecentIDs(max int) *recentIDs {
	return &recentIDs{ids: make(map[string]struct{}, max), ring: make([]string, max)}
}

func (r *recentIDs) add(id string) {
	if _, ok := r.ids[id]; ok {
		return
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.ids, old)
	}
	r.ring[r.next] = id
	r.ids[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}

func (r *recentIDs) has(id string) bool {
	_, ok := r.ids[id]
	return ok
}

// threatQueue holds threat revisions waiting to be published, in the order
// their threats were first queued, keeping only the latest revision of each.
type threatQueue struct {
	order   []string
	threats map[string]domain.Threat
}

func (q *threatQueue) add(t domain.Threat) {
	if q.threats == nil {
		q.threats = make(map[string]domain.Threat)
	}
	if have, ok := q.threats[t.ID]; ok {
		if t.Revision > have.Revision {
			q.threats[t.ID] = t
		}
		return
	}
	q.order = append(q.order, t.ID)
	q.threats[t.ID] = t
}

func (q *threatQueue) remove(id string) {
	delete(q.threats, id)
	for i, have := range q.order {
		if have == id {
			q.order = append(q.order[:i], q.order[i+1:]...)
			return
		}
	}
}

// each yields the queued threats oldest first. The caller may remove the
// yielded threat while iterating.
func (q *threatQueue) each() iter.Seq[domain.Threat] {
	return func(yield func(domain.Threat) bool) {
		for _, id := range append([]string(nil), q.order...) {
			t, ok := q.threats[id]
			if ok && !yield(t) {
				return
			}
		}
	}
}
