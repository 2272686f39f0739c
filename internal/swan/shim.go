package swan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
)

// shimRel is the shim's source, relative to the repository root.
const shimRel = "interop/strongswan/xfrmshim.c"

// shim returns the path of an xfrmshim.so for this instance: a prebuilt one
// if configured, else one compiled from the source (gcc takes 0.4 s, so
// the result is kept; see cachedShim).
func (c *Charon) shim() (string, error) {
	if c.opts.Shim != "" {
		return c.opts.Shim, nil
	}
	if p := os.Getenv("GRESEC_XFRMSHIM"); p != "" {
		return p, nil
	}
	src, err := ShimSource()
	if err != nil {
		return "", err
	}
	return cachedShim(src)
}

var (
	shimMu    sync.Mutex
	shimBuilt = map[string]string{} // source hash -> .so
)

// cachedShim builds src once per content, named by the source's hash, so
// an edited shim is rebuilt and concurrent test binaries never see a
// half-written file (build, then rename).
func cachedShim(src string) (string, error) {
	code, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(code)
	id := hex.EncodeToString(sum[:8])
	shimMu.Lock()
	defer shimMu.Unlock()
	if so, ok := shimBuilt[id]; ok {
		return so, nil
	}
	dir, err := shimCacheDir()
	if err != nil {
		return "", err
	}
	so := filepath.Join(dir, "xfrmshim-"+id+".so")
	if _, err := os.Stat(so); err != nil {
		tmp, err := os.CreateTemp(dir, "xfrmshim-*.so")
		if err != nil {
			return "", err
		}
		tmp.Close()
		if err := BuildShim(src, tmp.Name()); err != nil {
			os.Remove(tmp.Name())
			return "", err
		}
		if err := os.Rename(tmp.Name(), so); err != nil {
			os.Remove(tmp.Name())
			return "", err
		}
	}
	shimBuilt[id] = so
	return so, nil
}

// BuildShim compiles the shim source src into the shared object out.
func BuildShim(src, out string) error {
	cmd := exec.Command("gcc", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared", "-o", out, src, "-ldl")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("swan: building %s (needs gcc and libc6-dev): %w: %s", src, err, bytes.TrimSpace(b))
	}
	return nil
}

// ShimSource finds interop/strongswan/xfrmshim.c: above the working
// directory (go test runs in the package directory), else next to this
// source file as it was compiled.
func ShimSource() (string, error) {
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			p := filepath.Join(d, shimRel)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", "..", shimRel)
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p), nil
		}
	}
	return "", errors.New("swan: cannot find " + shimRel + "; set GRESEC_XFRMSHIM to a built xfrmshim.so")
}

// shimCacheDir is a directory only we can write: charon runs as root with
// LD_PRELOAD of what is in it, so a file another user planted in a shared
// /tmp must never be loaded.
func shimCacheDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("gresec-xfrmshim-%d", os.Geteuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return "", err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("swan: %s is not a directory owned by uid %d and writable only by it; remove it", dir, os.Geteuid())
	}
	return dir, nil
}
