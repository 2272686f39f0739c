package privdrop

import (
	"os"
	"strings"
	"testing"
)

func TestReadStatusOfSelf(t *testing.T) {
	st, err := ReadStatus("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if st.UID[0] != os.Getuid() || st.GID[0] != os.Getgid() {
		t.Errorf("uids %v gids %v, want %d/%d", st.UID, st.GID, os.Getuid(), os.Getgid())
	}
	if os.Geteuid() == 0 && st.CapBnd&(1<<CapNetAdmin) == 0 {
		t.Errorf("root without CAP_NET_ADMIN in its bounding set? %#x", st.CapBnd)
	}
}

func TestToRefusesBadUsers(t *testing.T) {
	for _, c := range []struct{ user, want string }{
		{"root", "is root; expected an unprivileged user"},
		{"0", "is root"},
		{"no-such-user-gresec", `user "no-such-user-gresec"`},
	} {
		err := To(c.user, CapNetAdmin)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("To(%q) = %v, want an error containing %q", c.user, err, c.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	if got := Describe(CapNetAdmin, CapNetRaw); got != "CAP_NET_ADMIN,CAP_NET_RAW" {
		t.Errorf("Describe = %q", got)
	}
	if got := Describe(); got != "none" {
		t.Errorf("Describe() = %q", got)
	}
}
