package initproc

import (
	"golang.org/x/sys/unix"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// steps are the ends of the set-up steps so far. Only the main goroutine
// appends, and Main sends them when the prepare message requests them.
var steps = make([]proto.Step, 0, 16)

// mark records the end of step name on CLOCK_MONOTONIC, the clock the runner
// reads too.
func mark(name string) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	steps = append(steps, proto.Step{Name: name, Ns: ts.Nano()})
}
