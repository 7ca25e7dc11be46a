package authz

// evalStackBytes is how much goroutine stack an evaluation is given before
// OPA starts. Evaluating the shipped policies recurses deeply enough that a
// goroutine starting from Go's small initial stack grows it several times
// during one evaluation, and each growth copies the stack and adjusts every
// frame on it. Request handlers run each request on a new goroutine, so
// without this they paid those copies on every decision.
const evalStackBytes = 64 << 10

// growStack makes the calling goroutine's stack at least evalStackBytes
// deep while it is still shallow, so that the one growth this forces copies
// a few frames instead of OPA's whole recursion. On a goroutine whose stack
// is already that large it costs only the zeroing of the frame.
//
//go:noinline
func growStack() {
	var frame [evalStackBytes]byte
	touchFrame(frame[:])
}

// touchFrame keeps the compiler from dropping growStack's frame.
//
//go:noinline
func touchFrame(b []byte) { b[len(b)-1] = 1 }
