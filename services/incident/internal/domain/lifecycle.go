package domain

import (
	"fmt"
	"time"
)

// State is a step of the incident lifecycle, after NIST SP 800-61.
type State string

// The lifecycle states in their only legal order. Reopen is the one way back.
const (
	StateOpen          State = "open"
	StateAssessed      State = "assessed"
	StateContained     State = "contained"
	StateInvestigating State = "investigating"
	StateRemediated    State = "remediated"
	StateClosed        State = "closed"
)

// next maps each state to the only state it may move to. Skipping a step is
// illegal so that every incident is assessed, contained and investigated
// before anyone closes it.
var next = map[State]State{
	StateOpen:          StateAssessed,
	StateAssessed:      StateContained,
	StateContained:     StateInvestigating,
	StateInvestigating: StateRemediated,
	StateRemediated:    StateClosed,
	StateClosed:        StateOpen,
}

// Verb names the operator command that performs each move, for error texts.
var verbFor = map[State]string{
	StateAssessed:      "assess",
	StateContained:     "contain",
	StateInvestigating: "ack",
	StateRemediated:    "remediate",
	StateClosed:        "close",
	StateOpen:          "reopen",
}

// Next returns the only state that s may move to.
func (s State) Next() State { return next[s] }

// Transition is one recorded move of the lifecycle.
type Transition struct {
	From   State     `json:"from"`
	To     State     `json:"to"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
}

// CheckTransition returns an ErrIllegalTransition error unless from may move
// to to. The error names the state the incident is in and the command that
// comes next.
func CheckTransition(id string, from, to State) error {
	if next[from] == to {
		return nil
	}
	want := next[from]

	return fmt.Errorf("%w: incident %s is %s and cannot move to %s; the next step is %q (to %s)",
		ErrIllegalTransition, id, from, to, verbFor[want], want)
}

// Move checks and records a transition to the state to. Actor is the
// identity id of the operator or service that acts; reason is required.
func (inc *Incident) Move(to State, actor, reason string, at time.Time) error {
	if err := CheckTransition(inc.ID, inc.State, to); err != nil {
		return err
	}
	if actor == "" || reason == "" {
		return fmt.Errorf("%w: moving incident %s to %s needs an actor and a reason",
			ErrIllegalTransition, inc.ID, to)
	}
	inc.Transitions = append(inc.Transitions, Transition{
		From: inc.State, To: to, At: at.UTC(), Actor: actor, Reason: reason,
	})
	inc.State = to
	inc.UpdatedAt = at.UTC()
	if to == StateOpen {
		inc.Reopens++
	}
	inc.record(at, actor, "transition", fmt.Sprintf("%s -> %s: %s", inc.Transitions[len(
		inc.Transitions)-1].From, to, reason))

	return nil
}
