package swan

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Key is key material read from charon's log. Its bytes never appear in
// fmt output (%v, %s, %x, %#v all print only the length); compare it with
// bytes.Equal or encode it explicitly.
type Key []byte

func (k Key) String() string   { return fmt.Sprintf("Key(%d bytes, redacted)", len(k)) }
func (k Key) GoString() string { return k.String() }

// Format redacts every verb, so %x cannot leak the key either.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// IKEKeyLog is what charon logs (ike level 4) when it derives IKE SA keys
// (RFC 7296 §2.14).
type IKEKeyLog struct {
	IKEName string // connection name; empty if charon had not picked one yet
	IKEID   int    // charon's IKE SA unique id (list-sas #n); 0 without ike_name logging
	// SPIs of the IKE SA, from the NAT-D chunk charon logs in IKE_SA_INIT;
	// zero for keys derived by an IKE rekey (not shown in the log).
	SPIi, SPIr uint64
	GIR        Key // DH shared secret
	SKEYSEED   Key
	SKd        Key
	SKai, SKar Key // empty with AEAD
	SKei, SKer Key // with AES-GCM: key then 4-byte salt
	SKpi, SKpr Key
}

// ChildKeyLog is what charon logs (chd level 4) when it installs a
// CHILD_SA (RFC 7296 §2.17).
type ChildKeyLog struct {
	Child   string // CHILD_SA config name
	ChildID int    // unique id, the {n} in the log and #n in list-sas
	IKEName string
	IKEID   int
	// Initiator: this side initiated the exchange that created the CHILD_SA
	// (IKE_AUTH or CREATE_CHILD_SA); "initiator" in the key names below
	// means that exchange's initiator.
	Initiator bool
	SPIIn     uint32 // this side's inbound SA (the SPI it chose)
	SPIOut    uint32
	// EncrInitiator is KEYMAT's first key (initiator to responder),
	// EncrResponder the second; key then salt for AES-GCM.
	EncrInitiator, EncrResponder   Key
	IntegInitiator, IntegResponder Key // empty with AEAD
	KeyIn, KeyOut                  Key // the encryption keys of SPIIn and SPIOut
	IntegIn, IntegOut              Key // their integrity keys (empty with AEAD)
	DHSecret                       Key // PFS g^ir; nil without PFS
	Seed                           Key // prf+ seed: [g^ir |] Ni | Nr
	IKE                            IKEKeyLog
}

const (
	lineThread = 1 + iota
	lineGroup
	lineIKEName
	lineIKEID
	lineText
)

var (
	// `<time> 13[IKE] <gre|1> text`; the <name|id> part only with
	// ike_name = yes and inside an IKE SA, and as <id> before a
	// config is selected.
	lineRE   = regexp.MustCompile(`(\d+)\[([A-Z]{3})\] (?:<(?:([^|>]*)\|)?(\d+)> )?(.*)$`)
	hexRE    = regexp.MustCompile(`^\s*(\d+): ((?:[0-9A-F]{2} )*[0-9A-F]{2})(?:  |$)`)
	dumpRE   = regexp.MustCompile(`^(.*) => (\d+) bytes @ \S+$`)
	stateRE  = regexp.MustCompile(`^CHILD_SA (\S+)\{(\d+)\} state change: (\w+) => (\w+)$`)
	parsedRE = regexp.MustCompile(`^parsed \S+ (request|response) \d+`)
	spiRE    = regexp.MustCompile(`^SPI 0x([0-9a-f]{1,8}),`)
)

// maxDump bounds one hexdump; charon's are at most a few KiB (packets).
const maxDump = 1 << 16

type logLine struct {
	thread  int
	group   string
	ikeName string
	ikeID   int
	text    string
}

type dump struct {
	logLine
	label string
	want  int
	buf   []byte
}

type keyParser struct {
	dumps    map[int]*dump        // by thread, in progress
	role     map[int]bool         // by thread: last parsed message was a response
	expect   map[int]string       // by thread: "in"/"out" after "adding ... ESP SA"
	children map[int]*ChildKeyLog // by thread, between INSTALLING and INSTALLED
	ikes     map[int]*IKEKeyLog   // by IKE key, being derived
	lastIKE  map[int]IKEKeyLog    // by IKE key, last derived
	natd     map[int][2]uint64    // by IKE key, SPIs seen since the last derivation

	ikeOut   []IKEKeyLog
	childOut []ChildKeyLog
}

// ParseKeyLog extracts IKE SA and CHILD_SA keys from a charon log written
// with ike and chd at level 4 (enc at 1 or more tells which side initiated
// each CHILD_SA). Lines it does not understand are skipped; it never fails.
func ParseKeyLog(log string) ([]IKEKeyLog, []ChildKeyLog) {
	p := &keyParser{
		dumps:    map[int]*dump{},
		role:     map[int]bool{},
		expect:   map[int]string{},
		children: map[int]*ChildKeyLog{},
		ikes:     map[int]*IKEKeyLog{},
		lastIKE:  map[int]IKEKeyLog{},
		natd:     map[int][2]uint64{},
	}
	for len(log) > 0 {
		line, rest, _ := strings.Cut(log, "\n")
		log = rest
		line = strings.TrimSuffix(line, "\r")
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		l := logLine{group: m[lineGroup], ikeName: m[lineIKEName], text: m[lineText]}
		l.thread, _ = strconv.Atoi(m[lineThread])
		l.ikeID, _ = strconv.Atoi(m[lineIKEID])
		p.line(l)
	}
	return p.ikeOut, p.childOut
}

func (p *keyParser) line(l logLine) {
	if h := hexRE.FindStringSubmatch(l.text); h != nil {
		d := p.dumps[l.thread]
		if d == nil {
			return
		}
		off, err := strconv.Atoi(h[1])
		if err != nil || off != len(d.buf) {
			delete(p.dumps, l.thread) // a gap: do not guess
			return
		}
		for _, b := range strings.Fields(h[2]) {
			v, _ := strconv.ParseUint(b, 16, 8)
			d.buf = append(d.buf, byte(v))
		}
		if len(d.buf) >= d.want {
			delete(p.dumps, l.thread)
			d.buf = d.buf[:d.want]
			p.dump(d)
		}
		return
	}
	delete(p.dumps, l.thread) // an unfinished dump is dropped
	if m := dumpRE.FindStringSubmatch(l.text); m != nil {
		n, err := strconv.Atoi(m[2])
		if err != nil || n > maxDump {
			return
		}
		d := &dump{logLine: l, label: strings.TrimSpace(m[1]), want: n}
		if n == 0 {
			p.dump(d)
			return
		}
		d.buf = make([]byte, 0, n)
		p.dumps[l.thread] = d
		return
	}
	p.text(l)
}

// ikeKey groups the lines of one IKE SA: its unique id, or the thread
// when the log does not name IKE SAs.
func ikeKey(l logLine) int {
	if l.ikeID > 0 {
		return l.ikeID
	}
	return -l.thread
}

func (p *keyParser) dump(d *dump) {
	k := Key(d.buf)
	switch d.group {
	case "IKE":
		key := ikeKey(d.logLine)
		if d.label == "shared Diffie Hellman secret" {
			p.ikes[key] = &IKEKeyLog{IKEName: d.ikeName, IKEID: d.ikeID, GIR: k}
			return
		}
		if d.label == "natd_chunk" && len(k) >= 16 {
			spii, spir := be64(k[0:8]), be64(k[8:16])
			if spir != 0 {
				p.natd[key] = [2]uint64{spii, spir}
			}
			return
		}
		ike := p.ikes[key]
		if ike == nil {
			return
		}
		switch d.label {
		case "SKEYSEED":
			ike.SKEYSEED = k
		case "Sk_d secret":
			ike.SKd = k
		case "Sk_ai secret":
			ike.SKai = k
		case "Sk_ar secret":
			ike.SKar = k
		case "Sk_ei secret":
			ike.SKei = k
		case "Sk_er secret":
			ike.SKer = k
		case "Sk_pi secret":
			ike.SKpi = k
		case "Sk_pr secret": // derived last
			ike.SKpr = k
			if spis, ok := p.natd[key]; ok {
				ike.SPIi, ike.SPIr = spis[0], spis[1]
				delete(p.natd, key)
			}
			if ike.IKEName == "" {
				ike.IKEName = d.ikeName
			}
			p.ikeOut = append(p.ikeOut, *ike)
			p.lastIKE[key] = *ike
			delete(p.ikes, key)
		}
	case "CHD":
		c := p.children[d.thread]
		if c == nil {
			return
		}
		switch d.label {
		case "DH secret":
			c.DHSecret = k
		case "seed":
			c.Seed = k
		case "encryption initiator key":
			c.EncrInitiator = k
		case "encryption responder key":
			c.EncrResponder = k
		case "integrity initiator key":
			c.IntegInitiator = k
		case "integrity responder key":
			c.IntegResponder = k
		}
	}
}

func (p *keyParser) text(l logLine) {
	switch l.group {
	case "ENC":
		if m := parsedRE.FindStringSubmatch(l.text); m != nil {
			p.role[l.thread] = m[1] == "response"
		}
	case "CHD":
		t := strings.TrimSpace(l.text)
		if m := stateRE.FindStringSubmatch(t); m != nil {
			id, _ := strconv.Atoi(m[2])
			switch {
			case m[3] == "CREATED" && m[4] == "INSTALLING":
				p.children[l.thread] = &ChildKeyLog{Child: m[1], ChildID: id, IKEName: l.ikeName,
					IKEID: l.ikeID, Initiator: p.role[l.thread]}
				delete(p.expect, l.thread)
			case m[3] == "INSTALLING":
				c := p.children[l.thread]
				delete(p.children, l.thread)
				if c == nil || c.ChildID != id || m[4] != "INSTALLED" {
					return
				}
				c.KeyIn, c.KeyOut = c.EncrInitiator, c.EncrResponder
				c.IntegIn, c.IntegOut = c.IntegInitiator, c.IntegResponder
				if c.Initiator {
					c.KeyIn, c.KeyOut = c.EncrResponder, c.EncrInitiator
					c.IntegIn, c.IntegOut = c.IntegResponder, c.IntegInitiator
				}
				c.IKE = p.lastIKE[ikeKey(l)]
				p.childOut = append(p.childOut, *c)
			}
			return
		}
		switch t {
		case "adding inbound ESP SA":
			p.expect[l.thread] = "in"
			return
		case "adding outbound ESP SA":
			p.expect[l.thread] = "out"
			return
		}
		if m := spiRE.FindStringSubmatch(t); m != nil {
			c := p.children[l.thread]
			if c == nil {
				return
			}
			spi, _ := strconv.ParseUint(m[1], 16, 32)
			switch p.expect[l.thread] {
			case "in":
				c.SPIIn = uint32(spi)
			case "out":
				c.SPIOut = uint32(spi)
			}
			delete(p.expect, l.thread)
		}
	}
}

func be64(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}
