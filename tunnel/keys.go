package tunnel

import (
	"encoding/hex"
	"fmt"

	"github.com/gresec/gresec/config"
	"github.com/gresec/gresec/esp"
	"github.com/gresec/gresec/ike"
)

// KeyExport is the live key material, for `gresec keys --wireshark`: the
// control socket hands it to root only, on explicit request.
type KeyExport struct {
	ESP    []ESPKey    `json:"esp"`
	IKE    []IKEKey    `json:"ike"`
	ISAKMP []ISAKMPKey `json:"isakmp,omitempty"` // keying = "ikev1" (ikev1.go)
}

// ESPKey is one ESP SA: Wireshark's esp_sa table row.
type ESPKey struct {
	Src, Dst  string
	SPI       string // 0x%08x
	Transform string // "aes256gcm16", "aes256-sha256" (esp.Transform.Name)
	Key       string // hex of key || salt (AEAD) or of the AES key (CBC)
	AuthKey   string `json:",omitempty"` // hex of the HMAC key (CBC)
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
		s := &t.static
		k.ESP = append(k.ESP,
			espKey(t.cfg.Local.String(), t.cfg.Remote.String(), s.spiOut, s.tr, s.out),
			espKey(t.cfg.Remote.String(), t.cfg.Local.String(), s.spiIn, s.tr, s.in))
	}
	t.staticMu.Unlock()
	t.ikeKeys(&k)
	t.ikev1Keys(&k)
	return k
}

// espKey is the export of one SA (static or negotiated): its key material split into
// the encryption and the integrity key.
func espKey(src, dst string, spi uint32, tr esp.Transform, keymat []byte) ESPKey {
	n := min(tr.EncKeyLen(), len(keymat))
	return ESPKey{Src: src, Dst: dst, SPI: fmt.Sprintf("0x%08x", spi), Transform: tr.Name(),
		Key: hex.EncodeToString(keymat[:n]), AuthKey: hex.EncodeToString(keymat[n:])}
}

// newStaticSAs builds the static SAs of s: inbound with the replay
// window, outbound resuming after s.SeqOut.
func newStaticSAs(path string, s config.Static, replayWindow int) (in, out *esp.SA, err error) {
	in, err = s.Transform.NewSA(s.SPIIn, s.KeyIn, replayWindow)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: static.key_in: %w", path, err)
	}
	out, err = s.Transform.NewSA(s.SPIOut, s.KeyOut, 0)
	if err == nil {
		err = out.SetSequence(s.SeqOut)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: static.key_out: %w", path, err)
	}
	return in, out, nil
}

// childKeys adds the ESP SAs of negotiated children (IKEv2 CHILD_SAs,
// IKEv1 phase 2 SAs) to k, both directions, and wipes their keys.
func (t *Tunnel) childKeys(k *KeyExport, children []ike.ChildKeys) {
	local, remote := t.cfg.Local.String(), remoteText(t.remoteAddr())
	for _, c := range children {
		s := c.Suite
		if tr, err := esp.TransformFromIKE(s.Encr, s.KeyBits, s.Integ, s.ESN); err == nil {
			k.ESP = append(k.ESP, espKey(local, remote, c.SPIOut, tr, c.KeyOut), espKey(remote, local, c.SPIIn, tr, c.KeyIn))
		}
		c.KeyIn.Wipe()
		c.KeyOut.Wipe()
	}
}

// ikeKeys adds the IKE engine's live IKE and CHILD SAs to k.
func (t *Tunnel) ikeKeys(k *KeyExport) {
	e := t.ike.Load()
	if e == nil {
		return
	}
	x := e.ExportKeys()
	t.childKeys(k, x.Children)
	for _, s := range x.IKE {
		k.IKE = append(k.IKE, IKEKey{SPIi: fmt.Sprintf("%016x", s.SPIi), SPIr: fmt.Sprintf("%016x", s.SPIr), Encr: s.Encr,
			SKei: hex.EncodeToString(s.SKei), SKer: hex.EncodeToString(s.SKer), Integ: s.Integ,
			SKai: hex.EncodeToString(s.SKai), SKar: hex.EncodeToString(s.SKar)})
		for _, sec := range []interface{ Wipe() }{s.SKd, s.SKai, s.SKar, s.SKei, s.SKer, s.SKpi, s.SKpr} {
			sec.Wipe()
		}
	}
}
