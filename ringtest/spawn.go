package ringtest

import (
	"os/exec"
	"runtime"
	"sync"
)

// The kernel sends a child its parent-death signal when the *thread* that
// forked it exits, not when the process does. Go may terminate a thread
// (when a goroutine that called runtime.LockOSThread returns without
// unlocking), which would SIGKILL a healthy server. So every child is
// started from one goroutine that is locked to its thread and never returns:
// that thread lives exactly as long as the process.

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// startCmd runs cmd.Start on the dedicated spawner thread.
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go spawner()
	})
	done := make(chan error, 1)
	spawnCh <- spawnReq{cmd: cmd, done: done}
	return <-done
}

func spawner() {
	runtime.LockOSThread() // never unlocked: the thread must not be reused or exit
	for req := range spawnCh {
		req.done <- req.cmd.Start()
	}
}
