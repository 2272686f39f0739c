package swan

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// IKESA is one IKE SA as `swanctl --list-sas` reports it.
type IKESA struct {
	Name       string
	UniqueID   int
	Version    int
	State      string // CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
	Initiator  bool   // this side initiated the IKE SA
	LocalHost  string
	LocalPort  int
	LocalID    string
	RemoteHost string
	RemotePort int
	RemoteID   string
	SPIi, SPIr uint64
	EncrAlg    string // AES_GCM_16
	EncrKey    int    // key size in bits
	IntegAlg   string // HMAC_SHA1_96; "" with an AEAD cipher
	PRF        string // PRF_HMAC_SHA2_384
	DHGroup    string // ECP_384
	// NAT detection: a NAT in front of this side (NATLocal) or of the
	// peer (NATRemote); NATFake: this side faked the detection hash
	// (encap = yes); NATAny: any of them, so UDP encapsulation is on.
	NATLocal, NATRemote, NATFake, NATAny bool
	Children                             []ChildSA
}

// ChildSA is one CHILD_SA of an IKESA.
type ChildSA struct {
	Name     string
	UniqueID int
	ReqID    int
	State    string // INSTALLED, REKEYED, DELETED, ...
	Mode     string // TRANSPORT, TUNNEL
	Protocol string // ESP
	SPIIn    uint32 // chosen by this side; the peer sends with it
	SPIOut   uint32
	EncrAlg  string
	EncrKey  int
	IntegAlg string // "" with an AEAD cipher
	ESN      bool
	Encap    bool   // ESP in UDP (RFC 3948)
	DHGroup  string // set only when the CHILD_SA was created with PFS
	LocalTS  []string
	RemoteTS []string
}

// Installed returns the children in state INSTALLED.
func (s IKESA) Installed() []ChildSA {
	var out []ChildSA
	for _, c := range s.Children {
		if c.State == "INSTALLED" {
			out = append(out, c)
		}
	}
	return out
}

// vnode is a section of swanctl's --pretty dump of a vici message.
type vnode struct {
	name     string
	kv       map[string]string
	lists    map[string][]string
	sections []*vnode
}

// maxDepth bounds nesting; list-sas output is 4 deep.
const maxDepth = 16

// parsePretty reads the `--pretty` text form of vici messages:
//
//	name {        section
//	  key = value
//	  key = [     list, one item per line, closed by ]
//	}
func parsePretty(text string) (*vnode, error) {
	root := &vnode{kv: map[string]string{}, lists: map[string][]string{}}
	stack := []*vnode{root}
	var listKey string
	var listOwner *vnode // non-nil while inside a list
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		top := stack[len(stack)-1]
		switch {
		case line == "":
		case listOwner != nil:
			if line == "]" {
				listOwner = nil
			} else {
				listOwner.lists[listKey] = append(listOwner.lists[listKey], line)
			}
		case line == "}":
			if len(stack) == 1 {
				return nil, fmt.Errorf("line %d: unbalanced }", n)
			}
			stack = stack[:len(stack)-1]
		case strings.HasSuffix(line, " {"):
			if len(stack) > maxDepth {
				return nil, fmt.Errorf("line %d: nested too deep", n)
			}
			s := &vnode{name: strings.TrimSuffix(line, " {"), kv: map[string]string{}, lists: map[string][]string{}}
			top.sections = append(top.sections, s)
			stack = append(stack, s)
		case strings.HasSuffix(line, " = ["):
			listKey, listOwner = strings.TrimSuffix(line, " = ["), top
			if _, ok := top.lists[listKey]; !ok {
				top.lists[listKey] = []string{}
			}
		case strings.HasSuffix(line, " ="): // empty value, trimmed
			top.kv[strings.TrimSuffix(line, " =")] = ""
		default:
			k, v, ok := strings.Cut(line, " = ")
			if !ok {
				return nil, fmt.Errorf("line %d: not a key, section or list: %.60q", n, line)
			}
			top.kv[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(stack) != 1 || listOwner != nil {
		return nil, errors.New("unterminated section or list")
	}
	return root, nil
}

// ParseSAs parses `swanctl --list-sas --pretty` output.
func ParseSAs(pretty string) ([]IKESA, error) {
	root, err := parsePretty(pretty)
	if err != nil {
		return nil, fmt.Errorf("swan: list-sas output: %w", err)
	}
	var out []IKESA
	for _, ev := range root.sections {
		if ev.name != "list-sa event" {
			continue
		}
		for _, s := range ev.sections {
			out = append(out, ikeSA(s))
		}
	}
	return out, nil
}

func ikeSA(s *vnode) IKESA {
	sa := IKESA{
		Name:       s.name,
		UniqueID:   atoi(s.kv["uniqueid"]),
		Version:    atoi(s.kv["version"]),
		State:      s.kv["state"],
		Initiator:  s.kv["initiator"] == "yes",
		LocalHost:  s.kv["local-host"],
		LocalPort:  atoi(s.kv["local-port"]),
		LocalID:    s.kv["local-id"],
		RemoteHost: s.kv["remote-host"],
		RemotePort: atoi(s.kv["remote-port"]),
		RemoteID:   s.kv["remote-id"],
		SPIi:       hex64(s.kv["initiator-spi"]),
		SPIr:       hex64(s.kv["responder-spi"]),
		EncrAlg:    s.kv["encr-alg"],
		EncrKey:    atoi(s.kv["encr-keysize"]),
		IntegAlg:   s.kv["integ-alg"],
		PRF:        s.kv["prf-alg"],
		DHGroup:    s.kv["dh-group"],
		NATLocal:   s.kv["nat-local"] == "yes",
		NATRemote:  s.kv["nat-remote"] == "yes",
		NATFake:    s.kv["nat-fake"] == "yes",
		NATAny:     s.kv["nat-any"] == "yes",
	}
	for _, sec := range s.sections {
		if sec.name != "child-sas" {
			continue
		}
		for _, c := range sec.sections {
			sa.Children = append(sa.Children, ChildSA{
				Name:     c.kv["name"],
				UniqueID: atoi(c.kv["uniqueid"]),
				ReqID:    atoi(c.kv["reqid"]),
				State:    c.kv["state"],
				Mode:     c.kv["mode"],
				Protocol: c.kv["protocol"],
				SPIIn:    uint32(hex64(c.kv["spi-in"])),
				SPIOut:   uint32(hex64(c.kv["spi-out"])),
				EncrAlg:  c.kv["encr-alg"],
				EncrKey:  atoi(c.kv["encr-keysize"]),
				IntegAlg: c.kv["integ-alg"],
				ESN:      c.kv["esn"] == "1",
				Encap:    c.kv["encap"] == "yes",
				DHGroup:  c.kv["dh-group"],
				LocalTS:  c.lists["local-ts"],
				RemoteTS: c.lists["remote-ts"],
			})
		}
	}
	return sa
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func hex64(s string) uint64 {
	n, _ := strconv.ParseUint(s, 16, 64)
	return n
}
