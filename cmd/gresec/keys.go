package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gresec/gresec/control"
	"github.com/gresec/gresec/tunnel"
)

// cmdKeys writes the live SAs' keys where Wireshark reads them, as
// strongSwan's save-keys plugin does: DIR becomes a Wireshark personal
// configuration folder (WIRESHARK_CONFIG_DIR=DIR tshark -r capture).
func cmdKeys(args []string) error {
	fs := newFlags("keys", "--wireshark DIR [-c FILE | -s SOCKET | -i INTERFACE]")
	dir := fs.String("wireshark", "", "write esp_sa, ikev2_decryption_table and preferences into `DIR` (created 0700)")
	path := fs.String("c", "", "config `file` of the instance (finds its control socket)")
	sock := fs.String("s", "", "control `socket` path")
	iface := fs.String("i", "gre0", "`interface` name (socket /run/gresec/NAME.sock)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--wireshark DIR is required: the keys are only ever written where you ask")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("root only: these are the tunnel's live keys")
	}
	socket, err := socketFor(*path, *sock, *iface)
	if err != nil {
		return err
	}
	raw, err := control.Query(socket, "keys")
	if err != nil {
		return err
	}
	var k tunnel.KeyExport
	if err := json.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", socket, err)
	}
	files, err := wiresharkFiles(k)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(*dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %d ESP and %d IKE SAs to %s; decrypt with: WIRESHARK_CONFIG_DIR=%s tshark -r CAPTURE\n",
		len(k.ESP), len(k.IKE)+len(k.ISAKMP), *dir, *dir)
	return nil
}

// Wireshark's names for the algorithms (epan/dissectors/packet-ipsec.c
// and packet-isakmp.c).
var (
	wiresharkESP = map[string]string{
		"aes128gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
		"aes192gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
		"aes256gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
	}
	// AES-CBC with HMAC: the cipher, and the integrity algorithm by the
	// strongSwan name's suffix.
	wiresharkCBC   = "AES-CBC [RFC3602]"
	wiresharkInteg = map[string]string{
		"sha1":   "HMAC-SHA-1-96 [RFC2404]",
		"sha256": "HMAC-SHA-256-128 [RFC4868]",
		"sha384": "HMAC-SHA-384-192 [RFC4868]",
		"sha512": "HMAC-SHA-512-256 [RFC4868]",
	}
	wiresharkIKE = map[string]string{
		"aes128gcm16": "AES-GCM-128 with 16 octet ICV [RFC5282]",
		"aes256gcm16": "AES-GCM-256 with 16 octet ICV [RFC5282]",
	}
)

// wiresharkFiles renders the UAT tables and the preference that turns ESP
// decryption on.
func wiresharkFiles(k tunnel.KeyExport) (map[string]string, error) {
	var esp, ike strings.Builder
	for _, sa := range k.ESP {
		alg, ok := wiresharkESP[sa.Transform]
		integ, authKey := "NULL", ""
		if _, hash, cbc := strings.Cut(sa.Transform, "-"); cbc && sa.AuthKey != "" {
			alg, ok = wiresharkCBC, wiresharkInteg[hash] != ""
			integ, authKey = wiresharkInteg[hash], "0x"+sa.AuthKey
		}
		if !ok {
			return nil, fmt.Errorf("ESP SA %s: Wireshark has no name for transform %q", sa.SPI, sa.Transform)
		}
		fam := "IPv4"
		if strings.Contains(sa.Src, ":") {
			fam = "IPv6"
		}
		fmt.Fprintf(&esp, "%q,%q,%q,%q,%q,%q,%q,%q\n", fam, sa.Src, sa.Dst, sa.SPI, alg, "0x"+sa.Key, integ, authKey)
	}
	for _, sa := range k.IKE {
		alg, ok := wiresharkIKE[sa.Encr]
		if !ok {
			return nil, fmt.Errorf("IKE SA %s: Wireshark has no name for transform %q", sa.SPIi, sa.Encr)
		}
		integ := "NONE [RFC4306]"
		if sa.Integ != "" {
			return nil, fmt.Errorf("IKE SA %s: integrity %q is not exported yet", sa.SPIi, sa.Integ)
		}
		// Byte fields are bare hex in Wireshark's UAT files; text is quoted.
		fmt.Fprintf(&ike, "%s,%s,%s,%s,%q,%s,%s,%q\n", sa.SPIi, sa.SPIr, sa.SKei, sa.SKer, alg, sa.SKai, sa.SKar, integ)
	}
	// IKEv1: the initiator's cookie and the phase 1 cipher key, both bytes.
	var isakmp strings.Builder
	for _, sa := range k.ISAKMP {
		fmt.Fprintf(&isakmp, "%s,%s\n", sa.ICookie, sa.Key)
	}
	return map[string]string{
		"esp_sa":                 esp.String(),
		"ikev1_decryption_table": isakmp.String(),
		"ikev2_decryption_table": ike.String(),
		"preferences":            "esp.enable_encryption_decode: TRUE\n",
	}, nil
}
