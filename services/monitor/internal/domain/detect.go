package domain

import (
	"time"
)

// observeThreshold adds o, which matched r, to its group's sliding window
// and returns the window's events when they reach the threshold. Each
// (signer, event id) pair counts once, so a replayed event cannot trip a
// threshold.
func (e *Engine) observeThreshold(r *Rule, o *Observation) []*Observation {

	groups := e.windows[r.ID]
	key := groupKey(r, o)
	w := groups[key]
	if w == nil {
		if len(groups) >= MaxGroupsPerRule {
			e.dropped++
			return nil
		}
		w = &window{ids: make(map[string]struct{})}
		groups[key] = w
	}

	w.expire(o.At.Add(-r.Window))
	eventKey := distinctKey(o)
	if _, dup := w.ids[eventKey]; dup {
		return nil
	}
	w.entries = append(w.entries, windowEntry{at: o.At, id: o.Event.ID, key: eventKey})
	w.ids[eventKey] = struct{}{}
	if len(w.entries) < r.Threshold {
		// An attack already raised keeps counting into its open threat,
		// also when its window restarted (after a pause or a restart).
		if a := e.threats[r.ID+"\x00"+key]; a != nil && o.At.Sub(a.LastSeen) <= a.dedupe {
			return []*Observation{o}
		}
		return nil
	}

	// A threat already open takes only the new event.
	if a := e.threats[r.ID+"\x00"+key]; a != nil && o.At.Sub(a.LastSeen) <= a.dedupe {
		return []*Observation{o}
	}

	// A new threat carries the window's ids as evidence. Copies of o with
	// each entry's id and time represent those events.
	evidence := make([]*Observation, 0, len(w.entries))
	for _, en := range w.entries {
		ev := *o
		ev.Event.ID = en.id
		ev.At = en.at
		evidence = append(evidence, &ev)
	}

	return evidence
}

// distinctKey identifies an event for counting: its signer and id, so a
// replay counts once and one party cannot cancel another's event by reusing
// its id.
func distinctKey(o *Observation) string {
	return o.Sender + "\x00" + o.Event.ID
}

// expire drops entries stored before cutoff.
func (w *window) expire(cutoff time.Time) {
	n := 0
	for n < len(w.entries) && w.entries[n].at.Before(cutoff) {
		delete(w.ids, w.entries[n].key)
		n++
	}
	w.entries = w.entries[n:]
}

// observeSequence advances o's group through the steps of r that o matched,
// given last to first so one event cannot complete two consecutive steps by
// itself, and returns the evidence of a completed sequence.
func (e *Engine) observeSequence(r *Rule, o *Observation, matched []int) []*Observation {
	groups := e.sequences[r.ID]
	key := groupKey(r, o)
	progress := groups[key]
	last := len(r.Steps) - 1

	for _, i := range matched {
		if i == 0 {
			if progress == nil {
				if len(groups) >= MaxGroupsPerRule {
					e.dropped++
					return nil
				}
				progress = make([]seqStep, last)
				groups[key] = progress
			}
			progress[0] = seqStep{ok: true, start: o.At, evidence: []*Observation{o}}
			continue
		}
		if progress == nil || !progress[i-1].ok || o.At.Sub(progress[i-1].start) > r.Within {
			continue
		}
		prev := progress[i-1]
		evidence := append(append([]*Observation(nil), prev.evidence...), o)
		if i == last {
			progress[i-1] = seqStep{}
			return evidence
		}
		progress[i] = seqStep{ok: true, start: prev.start, evidence: evidence}
	}

	return nil
}

// raise opens or updates the threat of r for o's group when evidence is not
// empty, and returns a copy of it when a new revision is due.
func (e *Engine) raise(r *Rule, o *Observation, evidence []*Observation) (Threat, bool) {
	if len(evidence) == 0 {
		return Threat{}, false
	}

	group := groupKey(r, o)
	key := r.ID + "\x00" + group
	a := e.threats[key]
	if a != nil && o.At.Sub(a.LastSeen) > a.dedupe {
		delete(e.threats, key)
		a = nil
	}

	due := false
	if a == nil {
		a = newActiveThreat(r, group, evidence)
		e.threats[key] = a
		due = true
	} else {
		due = a.add(o, r.AttributeIdentity)
	}
	if !due {
		return Threat{}, false
	}

	return a.nextRevision(o.At), true
}

// nextRevision starts a new revision published at at and returns a copy.
func (a *activeThreat) nextRevision(at time.Time) Threat {
	a.Revision++
	a.publishedAt = at
	a.pending = false

	return a.snapshot()
}

// PendingRevisions returns a new revision of every open threat that took
// evidence since its last revision was published at least minAge before
// now, so the final count of an attack that stopped is published too.
func (e *Engine) PendingRevisions(now time.Time, minAge time.Duration) []Threat {
	var out []Threat
	for _, a := range e.threats {
		if a.pending && now.Sub(a.publishedAt) >= minAge {
			out = append(out, a.nextRevision(now))
		}
	}

	return out
}

func newActiveThreat(r *Rule, group string, evidence []*Observation) *activeThreat {
	first := evidence[0]
	a := &activeThreat{
		Threat: Threat{
			ID:          threatID(r.ID, group, first.Event.ID),
			Type:        r.ThreatType,
			Severity:    r.Severity,
			Origin:      cut(Escape(first.Origin), MaxResourceBytes),
			Group:       group,
			RuleID:      r.ID,
			Description: r.Description,
			FirstSeen:   first.At,
			LastSeen:    first.At,
		},
		dedupe: r.Dedupe,
	}
	// An identity longer than any identity id cannot be contained, and
	// consumers reject it, so such a threat names none.
	if id := first.Identity(); r.AttributeIdentity && id != "" && len(id) <= MaxResourceBytes {
		a.Identity = id
		a.identityValid = true
	}
	a.Count = 1
	a.Evidence = []string{first.Event.ID}
	addObservedResource(&a.Threat, first)
	for _, o := range evidence[1:] {
		a.add(o, r.AttributeIdentity)
	}

	return a
}

func (a *activeThreat) snapshot() Threat {
	t := a.Threat
	t.Resources = append([]string{}, a.Resources...)
	t.Evidence = append([]string{}, a.Evidence...)

	return t
}

// sweep drops windows, sequence progress and threats that can no longer
// change, so state stays proportional to recent activity.
func (e *Engine) sweep(now time.Time) {
	for i := range e.rules {
		r := &e.rules[i]
		for key, w := range e.windows[r.ID] {
			w.expire(now.Add(-r.Window))
			if len(w.entries) == 0 {
				delete(e.windows[r.ID], key)
			}
		}
		for key, p := range e.sequences[r.ID] {
			if !anyStep(p) || now.Sub(latestStart(p)) > r.Within {
				delete(e.sequences[r.ID], key)
			}
		}
	}
	for key, a := range e.threats {
		if now.Sub(a.LastSeen) > a.dedupe {
			delete(e.threats, key)
		}
	}
}

func anyStep(p []seqStep) bool {
	for _, s := range p {
		if s.ok {
			return true
		}
	}

	return false
}

func latestStart(p []seqStep) time.Time {
	var t time.Time
	for _, s := range p {
		if s.ok && s.start.After(t) {
			t = s.start
		}
	}

	return t
}
