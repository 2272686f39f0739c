// Package privdrop turns a daemon started as root into an unprivileged user
// that keeps only the capabilities it still uses.
package privdrop

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capability numbers (linux/capability.h).
const (
	CapNetBindService = 10
	CapNetAdmin       = 12
	CapNetRaw         = 13
)

var capNames = map[int]string{CapNetBindService: "CAP_NET_BIND_SERVICE", CapNetAdmin: "CAP_NET_ADMIN", CapNetRaw: "CAP_NET_RAW"}

// To makes every thread of the process run as name (a user name or a
// numeric uid) with its primary group, keeping only the capabilities in
// keep, and sets no_new_privs so nothing it runs can regain more.
//
// Capabilities are per thread on Linux and Go runs many threads, so every
// step goes through syscall.AllThreadsSyscall; that needs a binary built
// without cgo (CGO_ENABLED=0, as `make build` does), and To says so
// rather than leaving some threads privileged.
func To(name string, keep ...int) error {
	uid, gid, err := lookup(name)
	if err != nil {
		return err
	}
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	// The bounding set first, while CAP_SETPCAP is still ours.
	for c := 0; c <= last; c++ {
		if mask&(1<<c) == 0 {
			if err := all("dropping capability from the bounding set", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				return err
			}
		}
	}
	if err := all("keeping capabilities across the user change", unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		return err
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("privdrop: setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("privdrop: setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("privdrop: setresuid %d: %w", uid, err)
	}
	if err := limit(mask); err != nil {
		return err
	}
	if err := all("clearing keep-capabilities", unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		return err
	}
	// A credential change resets dumpable to fs.suid_dumpable; keys must
	// stay out of core files and /proc/PID/mem.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	return verify(uid, mask)
}

// Limit is for a daemon started unprivileged with capabilities (systemd's
// User= with AmbientCapabilities=): it keeps only those in keep, in every
// thread, clears the ambient set and sets no_new_privs.
func Limit(keep ...int) error {
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	if err := limit(mask); err != nil {
		return err
	}
	return verify(os.Getuid(), mask)
}

func limit(mask uint64) error {
	if err := all("clearing ambient capabilities", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = uint32(mask), uint32(mask)
	data[1].Effective, data[1].Permitted = uint32(mask>>32), uint32(mask>>32)
	if err := all("setting capabilities", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return err
	}
	return all("setting no_new_privs", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0)
}

// all runs a system call in every thread of the process.
func all(what string, trap, a1, a2, a3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3); e != 0 {
		if e == syscall.ENOTSUP {
			return fmt.Errorf("privdrop: %s: this binary uses cgo, so it cannot change all its threads; build it with CGO_ENABLED=0", what)
		}
		return fmt.Errorf("privdrop: %s: %w", what, e)
	}
	return nil
}

// Describe names the capabilities in keep, for logs and docs.
func Describe(keep ...int) string {
	var s []string
	for _, c := range keep {
		s = append(s, capNames[c])
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

func lookup(name string) (uid, gid int, err error) {
	var u *user.User
	if _, perr := strconv.Atoi(name); perr == nil {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("privdrop: user %q: %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid == 0 {
		return 0, 0, fmt.Errorf("privdrop: user %q is root; expected an unprivileged user", name)
	}
	return uid, gid, nil
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("privdrop: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("privdrop: cap_last_cap %q", b)
	}
	return n, nil
}

// verify reads back what every thread now holds.
func verify(uid int, mask uint64) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("privdrop: %w", err)
	}
	for _, task := range tasks {
		st, err := ReadStatus("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		if st.UID != [4]int{uid, uid, uid, uid} || st.CapEff != mask || st.CapPrm != mask {
			return fmt.Errorf("privdrop: thread %s still has uids %v, effective capabilities %#x, permitted %#x; expected uid %d and %#x",
				task.Name(), st.UID, st.CapEff, st.CapPrm, uid, mask)
		}
	}
	return nil
}

// Status is what /proc/PID/status says about a process's credentials.
type Status struct {
	UID, GID                               [4]int // real, effective, saved, filesystem
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	NoNewPrivs                             bool
}

// ReadStatus parses the credential lines of a /proc status file.
func ReadStatus(path string) (Status, error) {
	var st Status
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch k {
		case "Uid", "Gid":
			dst := &st.UID
			if k == "Gid" {
				dst = &st.GID
			}
			for i := 0; i < 4 && i < len(f); i++ {
				dst[i], _ = strconv.Atoi(f[i])
			}
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			if len(f) == 0 {
				continue
			}
			n, _ := strconv.ParseUint(f[0], 16, 64)
			switch k {
			case "CapInh":
				st.CapInh = n
			case "CapPrm":
				st.CapPrm = n
			case "CapEff":
				st.CapEff = n
			case "CapBnd":
				st.CapBnd = n
			case "CapAmb":
				st.CapAmb = n
			}
		case "NoNewPrivs":
			st.NoNewPrivs = len(f) > 0 && f[0] == "1"
		}
	}
	return st, nil
}
