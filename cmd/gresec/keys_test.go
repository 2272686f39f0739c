package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/tunnel"
)

// TestWiresharkFilesDecrypt: the esp_sa table `gresec keys` writes lets
// tshark, which knows nothing else, decrypt our ESP of each transform it
// supports (all but ChaCha20-Poly1305) and verify its ICVs, the HMACs of
// AES-CBC included: an implementation of RFC 3602/2404/4868 no one here
// wrote.
func TestWiresharkFilesDecrypt(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Fatalf("tshark is not installed: `sudo make test` installs it")
	}
	names := []string{"aes128gcm16", "aes192gcm16", "aes256gcm16", "aes128-sha1", "aes192-sha256", "aes256-sha256", "aes256-sha384", "aes256-sha512"}
	var export tunnel.KeyExport
	var frames [][]byte
	for i, name := range names {
		tr, err := esp.ParseTransform(name)
		if err != nil {
			t.Fatal(err)
		}
		km := make([]byte, tr.KeymatLen())
		for j := range km {
			km[j] = byte(i*31 + j)
		}
		spi := uint32(0x5000 + i)
		sa, err := tr.NewSA(spi, km, 0)
		if err != nil {
			t.Fatal(err)
		}
		export.ESP = append(export.ESP, tunnel.ESPKey{Src: "198.18.0.1", Dst: "198.18.0.2", SPI: fmt.Sprintf("0x%08x", spi),
			Transform: tr.Name(), Key: hex.EncodeToString(km[:tr.EncKeyLen()]), AuthKey: hex.EncodeToString(km[tr.EncKeyLen():])})
		for n := range 3 {
			frames = append(frames, espFrame(t, sa, 40+n*13))
		}
	}
	files, err := wiresharkFiles(export)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files["preferences"] += "esp.enable_authentication_check: TRUE\n"
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pcap := filepath.Join(dir, "esp.pcap")
	writePcap(t, pcap, frames)
	cmd := exec.Command("tshark", "-n", "-r", pcap, "-T", "fields", "-e", "esp.spi", "-e", "icmp.type", "-e", "esp.icv_good", "-E", "separator=,")
	cmd.Env = append(os.Environ(), "WIRESHARK_CONFIG_DIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark shows %d frames, want %d:\n%s", len(lines), len(frames), out)
	}
	for i, line := range lines {
		f := strings.Split(line, ",")
		name := names[i/3]
		if len(f) != 3 || f[1] != "8" {
			t.Errorf("%s frame %d: tshark did not decrypt to an ICMP echo request: %q", name, i, line)
			continue
		}
		if f[2] != "1" && f[2] != "True" {
			t.Errorf("%s frame %d: tshark does not confirm the ICV: %q", name, i, line)
		}
	}
}

// espFrame is an IPv4 packet 198.18.0.1 -> 198.18.0.2 carrying ESP of sa
// around GRE around an ICMP echo request with n bytes of data.
func espFrame(t *testing.T, sa *esp.SA, n int) []byte {
	t.Helper()
	inner := make([]byte, 28+n)
	inner[0], inner[8], inner[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(inner[2:], uint16(len(inner)))
	copy(inner[12:], []byte{198, 19, 0, 0, 198, 19, 0, 1})
	binary.BigEndian.PutUint16(inner[10:], ipChecksum(inner[:20]))
	inner[20] = 8 // echo request
	binary.BigEndian.PutUint16(inner[22:], ipChecksum(inner[20:]))
	gre := append([]byte{0, 0, 0x08, 0x00}, inner...)
	buf := make([]byte, 20+esp.MaxPrefixLen+len(gre)+esp.MaxSuffixLen)
	off := 20 + esp.MaxPrefixLen
	copy(buf[off:], gre)
	pkt, err := sa.Seal(buf, off, len(gre), esp.NextHeaderGRE)
	if err != nil {
		t.Fatal(err)
	}
	ip := make([]byte, 20, 20+len(pkt))
	ip[0], ip[8], ip[9] = 0x45, 64, 50
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(pkt)))
	copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	return append(ip, pkt...)
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// writePcap writes frames as a classic pcap file of raw IP packets
// (LINKTYPE_RAW).
func writePcap(t *testing.T, path string, frames [][]byte) {
	t.Helper()
	f := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	f = binary.LittleEndian.AppendUint16(f, 2)
	f = binary.LittleEndian.AppendUint16(f, 4)
	f = binary.LittleEndian.AppendUint64(f, 0)     // thiszone, sigfigs
	f = binary.LittleEndian.AppendUint32(f, 65535) // snaplen
	f = binary.LittleEndian.AppendUint32(f, 101)   // LINKTYPE_RAW
	for i, fr := range frames {
		f = binary.LittleEndian.AppendUint32(f, uint32(1_700_000_000+i))
		f = binary.LittleEndian.AppendUint32(f, 0)
		f = binary.LittleEndian.AppendUint32(f, uint32(len(fr)))
		f = binary.LittleEndian.AppendUint32(f, uint32(len(fr)))
		f = append(f, fr...)
	}
	if err := os.WriteFile(path, f, 0o600); err != nil {
		t.Fatal(err)
	}
}
