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

// LibipsecPackages hold the kernel-libipsec plugin (Options.Libipsec).
var LibipsecPackages = []string{"libcharon-extra-plugins"}

var (
	installMu sync.Mutex
	installed = map[string]bool{} // present once; packages do not vanish mid-run
)

// InstallLibipsec is Install for Packages and LibipsecPackages.
func InstallLibipsec() error {
	return install(append(append([]string{}, Packages...), LibipsecPackages...))
}

// Install apt-get installs whichever of Packages are missing. It is
// idempotent and cheap when everything is present; it needs root only when
// something is missing, and then says what.
func Install() error { return install(Packages) }

func install(pkgs []string) error {
	installMu.Lock()
	defer installMu.Unlock()
	missing := missingPackages(unseen(pkgs))
	if len(missing) == 0 {
		markInstalled(pkgs)
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
	if still := missingPackages(missing); len(still) > 0 {
		return fmt.Errorf("swan: apt-get reported success but %s are still not installed", strings.Join(still, " "))
	}
	markInstalled(pkgs)
	return nil
}

func unseen(pkgs []string) []string {
	var out []string
	for _, p := range pkgs {
		if !installed[p] {
			out = append(out, p)
		}
	}
	return out
}

func markInstalled(pkgs []string) {
	for _, p := range pkgs {
		installed[p] = true
	}
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
