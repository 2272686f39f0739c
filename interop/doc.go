// Package interop runs gresec against other implementations. Its tests (in
// _test.go files) boot a stock Debian kernel under qemu (package
// interop/guest) and tunnel between that kernel's own GRE and XFRM stack and
// the gresec binary running in a network namespace on the host: the host
// kernel here has neither GRE nor ESP, the guest's has both.
//
// Run with `sudo go test ./interop/`; the first run builds the guest image
// (a few minutes, see interop/guest/README.md).
package interop
