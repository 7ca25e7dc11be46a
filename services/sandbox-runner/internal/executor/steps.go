package executor

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// stepLog records the ends of a run's steps on CLOCK_MONOTONIC, the clock
// sandbox-init reads too, so the runner's and the init's steps line up. It is
// not safe for concurrent use.
type stepLog []proto.Step

func (l *stepLog) mark(name string) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	*l = append(*l, proto.Step{Name: name, Ns: ts.Nano()})
}

// formatSteps returns each step with the time since the one before, in
// milliseconds, for the debug log.
func formatSteps(steps []proto.Step) string {
	var b strings.Builder
	for i, s := range steps {
		if i > 0 {
			fmt.Fprintf(&b, " %s=+%.3fms", s.Name, float64(s.Ns-steps[i-1].Ns)/1e6)
		} else {
			b.WriteString(s.Name)
		}
	}
	return b.String()
}

// mergeSteps returns the steps of every log in time order.
func mergeSteps(logs ...[]proto.Step) []proto.Step {
	var out []proto.Step
	for _, l := range logs {
		out = append(out, l...)
	}
	slices.SortStableFunc(out, func(a, b proto.Step) int { return cmp.Compare(a.Ns, b.Ns) })
	return out
}
