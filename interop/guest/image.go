// Package guest boots a Debian guest under qemu as a real Linux-kernel peer
// for interop tests: its kernel does GRE, ESP and XFRM, which the host
// kernel of our test machines does not. The guest's NIC is a TAP device in a
// network namespace the test owns; commands reach it over a 9p share and an
// agent loop (guest-init.sh) that runs them and writes back their output and
// exit code.
package guest

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// The recipe travels inside the test binary, so EnsureImage works from any
// working directory, and the script keys its cache on exactly these bytes.
var (
	//go:embed build-image.sh
	buildScript []byte
	//go:embed guest-init.sh
	initScript []byte
)

// Image file names inside the directory EnsureImage returns.
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
	RootFile   = "rootfs.ext4"
)

// Host tools the guest needs, and the Debian packages that hold them.
var hostTools = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"debootstrap":        "debootstrap",
	"mke2fs":             "e2fsprogs",
	"ip":                 "iproute2",
}

// HostPackages is what `apt-get install -y --no-install-recommends` needs on
// the host for this package.
const HostPackages = "qemu-system-x86 debootstrap e2fsprogs iproute2"

// Check reports why guests cannot run here (not root, a tool missing), or
// nil. Tests use it to skip or fail early with a useful message.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("guest: needs root (debootstrap, TAP devices, network namespaces)")
	}
	var missing []string
	for tool, pkg := range hostTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("guest: missing host packages %s: apt-get install -y --no-install-recommends %s",
			strings.Join(missing, " "), HostPackages)
	}
	return nil
}

var (
	imageMu  sync.Mutex
	imageDir string
)

// EnsureImage returns the directory holding the guest's kernel, initrd and
// root file system, building it first when the cache (GRESEC_INTEROP_CACHE,
// default /var/cache/gresec-interop) holds none for the current recipe. A
// cold build takes a few minutes and needs the Debian mirror; progress goes
// to stderr.
func EnsureImage() (dir string, err error) {
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageDir != "" {
		return imageDir, nil
	}
	if err := Check(); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "gresec-recipe-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for name, body := range map[string][]byte{"build-image.sh": buildScript, "guest-init.sh": initScript} {
		if err := os.WriteFile(filepath.Join(tmp, name), body, 0o755); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("/bin/bash", filepath.Join(tmp, "build-image.sh"))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "IMAGE_DIR="); ok {
			dir = d
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("guest: build-image.sh: %w (its log is above)", err)
	}
	if dir == "" {
		return "", errors.New("guest: build-image.sh printed no IMAGE_DIR")
	}
	for _, f := range []string{KernelFile, InitrdFile, RootFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("guest: image incomplete: %w", err)
		}
	}
	imageDir = dir
	return dir, nil
}
