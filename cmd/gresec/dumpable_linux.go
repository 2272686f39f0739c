package main

import "golang.org/x/sys/unix"

// setNotDumpable also makes /proc/PID/mem and core files unavailable.
func setNotDumpable() { _ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) }
