package tunnel

import (
	"encoding/hex"
	"fmt"
)

// KeyExport is the live key material, for `gresec keys --wireshark`: the
// control socket hands it to root only, on explicit request.
type KeyExport struct {
	ESP []ESPKey `json:"esp"`
	IKE []IKEKey `json:"ike"`
}

// ESPKey is one ESP SA: Wireshark's esp_sa table row.
type ESPKey struct {
	Src, Dst  string
	SPI       string // 0x%08x
	Transform string // "aes256gcm16"
	Key       string // hex of key || salt
}

// IKEKey is one IKE SA: Wireshark's ikev2_decryption_table row.
type IKEKey struct {
	SPIi, SPIr string // 16 hex digits
	Encr       string // "aes256gcm16"
	SKei, SKer string // hex of key || salt
	Integ      string // "" for AEAD
	SKai, SKar string
}

// Keys exports the SAs' keys. The caller wipes nothing: the strings are
// the exported copy.
func (t *Tunnel) Keys() KeyExport {
	var k KeyExport
	t.staticMu.Lock()
	if t.static.in != nil {
		tr := transformFor(len(t.static.in))
		k.ESP = append(k.ESP,
			ESPKey{Src: t.cfg.Local.String(), Dst: t.cfg.Remote.String(), SPI: fmt.Sprintf("0x%08x", t.static.spiOut), Transform: tr, Key: hex.EncodeToString(t.static.out)},
			ESPKey{Src: t.cfg.Remote.String(), Dst: t.cfg.Local.String(), SPI: fmt.Sprintf("0x%08x", t.static.spiIn), Transform: tr, Key: hex.EncodeToString(t.static.in)})
	}
	t.staticMu.Unlock()
	t.ikeKeys(&k)
	return k
}

func transformFor(keyLen int) string {
	if keyLen == 20 {
		return "aes128gcm16"
	}
	return "aes256gcm16"
}

// ikeKeys adds the IKE engine's live IKE and CHILD SAs to k.
func (t *Tunnel) ikeKeys(k *KeyExport) {
	e := t.ike.Load()
	if e == nil {
		return
	}
	x := e.ExportKeys()
	local, remote := t.cfg.Local.String(), t.cfg.Remote.String()
	for _, c := range x.Children {
		k.ESP = append(k.ESP,
			ESPKey{Src: local, Dst: remote, SPI: fmt.Sprintf("0x%08x", c.SPIOut), Transform: c.Transform, Key: hex.EncodeToString(c.KeyOut)},
			ESPKey{Src: remote, Dst: local, SPI: fmt.Sprintf("0x%08x", c.SPIIn), Transform: c.Transform, Key: hex.EncodeToString(c.KeyIn)})
		c.KeyIn.Wipe()
		c.KeyOut.Wipe()
	}
	for _, s := range x.IKE {
		k.IKE = append(k.IKE, IKEKey{SPIi: fmt.Sprintf("%016x", s.SPIi), SPIr: fmt.Sprintf("%016x", s.SPIr), Encr: s.Encr,
			SKei: hex.EncodeToString(s.SKei), SKer: hex.EncodeToString(s.SKer), Integ: s.Integ,
			SKai: hex.EncodeToString(s.SKai), SKar: hex.EncodeToString(s.SKar)})
		for _, sec := range []interface{ Wipe() }{s.SKd, s.SKai, s.SKar, s.SKei, s.SKer, s.SKpi, s.SKpr} {
			sec.Wipe()
		}
	}
}
