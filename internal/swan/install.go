package swan

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Packages are the Debian packages the harness needs (installed with
// --no-install-recommends). apt pulls in libstrongswan, strongswan-libcharon
// and strongswan-starter with them; gcc and libc6-dev build the shim.
var Packages = []string{
	"strongswan-charon", "strongswan-swanctl", "libstrongswan-standard-plugins",
	"gcc", "libc6-dev",
}

var (
	installMu sync.Mutex
	installed bool // all Packages were present once; packages do not vanish mid-run
)

// Install apt-get installs whichever of Packages are missing. It is
// idempotent and cheap when everything is present; it needs root only when
// something is missing, and then says what.
func Install() error {
	installMu.Lock()
	defer installMu.Unlock()
	if installed {
		return nil
	}
	missing := missingPackages(Packages)
	if len(missing) == 0 {
		installed = true
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("swan: missing Debian packages %s; install them as root: apt-get install -y --no-install-recommends %s",
			strings.Join(missing, " "), strings.Join(missing, " "))
	}
	install := func() error {
		return apt(append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...)
	}
	if err := install(); err != nil {
		// Stale or missing package lists are the usual cause; one update.
		if uerr := apt("update", "-q"); uerr != nil {
			return fmt.Errorf("swan: %v; apt-get update: %v", err, uerr)
		}
		if err := install(); err != nil {
			return err
		}
	}
	if still := missingPackages(Packages); len(still) > 0 {
		return fmt.Errorf("swan: apt-get reported success but %s are still not installed", strings.Join(still, " "))
	}
	installed = true
	return nil
}

func missingPackages(pkgs []string) []string {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			missing = append(missing, p)
		}
	}
	return missing
}

func apt(args ...string) error {
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, lastLines(bytes.TrimSpace(out), 10))
	}
	return nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
