package tunnel

import (
	"encoding/hex"
	"fmt"
)

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
