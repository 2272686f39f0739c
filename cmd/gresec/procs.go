package main

import (
	"os"
	"runtime"
)

// oneProcUnlessSet runs the daemon's Go code on one P (GOMAXPROCS=1)
// unless the GOMAXPROCS environment variable chooses. The data plane is
// two goroutines that spend most of their time in system calls, where the
// kernel does most of the per-packet work; a second P buys no
// parallelism, only the scheduler's spinning threads and wake-ups as the
// pumps park and wake (measured: about a tenth less CPU per GB and a
// faster tunnel on a 2-vCPU machine, docs/performance.md). A process
// choice, so it is made here and not in the tunnel library.
func oneProcUnlessSet() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
