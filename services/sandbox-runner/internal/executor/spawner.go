package executor

import (
	"os"
	"runtime"
)

// spawner starts every sandbox from one goroutine locked to its OS thread for
// the life of the process. The parent-death signal of a child fires when the
// thread that created it exits, and Go retires the threads of goroutines that
// exit while locked, so no other goroutine may start a sandbox.
type spawner struct {
	requests chan spawnRequest
}

type spawnRequest struct {
	path  string
	argv  []string
	attr  *os.ProcAttr
	reply chan spawnReply
}

type spawnReply struct {
	proc *os.Process
	err  error
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest)}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	runtime.LockOSThread()
	// The goroutine never returns and never unlocks, so its thread lives as long
	// as the runner.
	for req := range s.requests {
		p, err := os.StartProcess(req.path, req.argv, req.attr)
		req.reply <- spawnReply{proc: p, err: err}
	}
	select {}
}

func (s *spawner) start(path string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	reply := make(chan spawnReply, 1)
	s.requests <- spawnRequest{path: path, argv: argv, attr: attr, reply: reply}
	r := <-reply
	return r.proc, r.err
}
