package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// kind is the TOML type a key takes.
type kind int

const (
	kindTable kind = iota
	kindString
	kindInteger
	kindBoolean
	kindStringArray
	kindNumber // a float; an integer is taken too
)

// expected says what a key of kind k must be, in TOML terms.
func (k kind) expected() string {
	return [...]string{
		kindTable:       "a table",
		kindString:      "a string (in quotes)",
		kindInteger:     "an integer",
		kindBoolean:     "a boolean (true or false)",
		kindStringArray: "an array of strings",
		kindNumber:      "a number",
	}[k]
}

// schema maps every dotted key of the file layout ("tunnel", "tunnel.mtu")
// to its kind. It is read from the struct tags of file, so it cannot
// drift from what the decoder accepts.
var schema = func() map[string]kind {
	m := map[string]kind{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + strings.Split(f.Tag.Get("toml"), ",")[0]
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				m[key] = kindTable
				walk(ft, key+".")
			case reflect.String:
				m[key] = kindString
			case reflect.Int64:
				m[key] = kindInteger
			case reflect.Float64:
				m[key] = kindNumber
			case reflect.Bool:
				m[key] = kindBoolean
			case reflect.Slice:
				m[key] = kindStringArray
			default:
				panic("config: no TOML kind for " + key)
			}
		}
	}
	walk(reflect.TypeOf(file{}), "")
	return m
}()

// tomlType names the TOML type of a value decoded into any.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time: // local dates and times too
		return "a date/time"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "an unknown type"
}

// checkTypes compares the decoded document with the schema. Its errors
// speak TOML (tables, strings, integers) and never show a value: the
// value may be key material written in the wrong place or form. Of
// several problems the one at the alphabetically first key is reported,
// as before.
func checkTypes(name string, doc map[string]any) error {
	var errs []*Error
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			want, ok := schema[key]
			if !ok {
				errs = append(errs, unknownKey(name, prefix, k))
				continue
			}
			if sub, isTable := v.(map[string]any); isTable && want == kindTable {
				walk(key+".", sub)
				continue
			}
			if msg := mismatch(key, want, v); msg != "" {
				errs = append(errs, &Error{File: name, Key: key, Msg: msg})
			}
		}
	}
	walk("", doc)
	if len(errs) == 0 {
		return nil
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	return errs[0]
}

// mismatch says why v is not of kind want, or "" when it is.
func mismatch(key string, want kind, v any) string {
	switch want {
	case kindTable:
		return fmt.Sprintf("must be a table (a [%s] section), got %s", key, tomlType(v))
	case kindString:
		if _, ok := v.(string); ok {
			return ""
		}
		if secretKeys[key] {
			return fmt.Sprintf("must be a string in quotes, as in %s = \"0x…\", got %s (value not shown)", leaf(key), tomlType(v))
		}
	case kindInteger:
		if _, ok := v.(int64); ok {
			return ""
		}
	case kindBoolean:
		if _, ok := v.(bool); ok {
			return ""
		}
	case kindNumber:
		switch v.(type) {
		case float64, int64:
			return ""
		}
	case kindStringArray:
		a, ok := v.([]any)
		if !ok {
			break
		}
		for i, e := range a {
			if _, ok := e.(string); !ok {
				return fmt.Sprintf("must be an array of strings, but element %d is %s", i, tomlType(e))
			}
		}
		return ""
	}
	return fmt.Sprintf("must be %s, got %s", want.expected(), tomlType(v))
}

// secretKeys hold key material.
var secretKeys = map[string]bool{"static.key_out": true, "static.key_in": true}

func leaf(key string) string { return key[strings.LastIndexByte(key, '.')+1:] }

// unknownKey reports a key the schema does not have. Its name is shown
// only when it looks like a key name: a line of key material could have
// been taken for one.
func unknownKey(file, prefix, k string) *Error {
	section := strings.TrimSuffix(prefix, ".")
	if !showable(k) {
		where := "at the top level"
		if section != "" {
			where = "in [" + section + "]"
		}
		return &Error{File: file, Key: section, Msg: "unknown key " + where +
			" (its name is not shown: it looks like key material); see docs/configuration.md for the valid keys"}
	}
	key := prefix + k
	msg := "unknown key; see docs/configuration.md for the valid keys"
	if _, ok := schema[strings.ToLower(key)]; ok {
		msg = fmt.Sprintf("unknown key; keys are lower case: %s", strings.ToLower(key))
	} else if s := suggest(key); s != "" {
		msg = "unknown key; " + s + " (docs/configuration.md lists the valid keys)"
	}
	return &Error{File: file, Key: key, Msg: msg}
}

// suggest names the known key an unknown one was probably meant to be:
// one of the same section within two typing mistakes ("keyng": did you
// mean ipsec.keying?), else the same name in another section ("udp_encap"
// under [ike] belongs in [ipsec]). "" when nothing is close.
func suggest(key string) string {
	name, section := leaf(key), strings.TrimSuffix(key, leaf(key))
	best, bestDist := "", 3
	var elsewhere []string
	for k := range schema {
		if strings.TrimSuffix(k, leaf(k)) != section {
			if section != "" && leaf(k) == name {
				elsewhere = append(elsewhere, k)
			}
			continue
		}
		if d := editDistance(name, leaf(k)); d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	switch {
	case best != "" && bestDist < len(name):
		if schema[best] == kindTable {
			return fmt.Sprintf("did you mean [%s]?", best)
		}
		return fmt.Sprintf("did you mean %s?", best)
	case len(elsewhere) > 0:
		sort.Strings(elsewhere)
		k := elsewhere[0]
		return fmt.Sprintf("%s belongs in [%s], as %s", name, strings.TrimSuffix(k, "."+name), k)
	}
	return ""
}

// editDistance is the Levenshtein distance between two short key names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// hexRun finds what may be key material: 16 or more hex digits in a row.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16,}`)

// showable tells whether a value or key name may appear in an error:
// short, printable and without a long run of hex digits.
func showable(s string) bool {
	if len(s) > 64 || hexRun.MatchString(s) {
		return false
	}
	for _, r := range s {
		if r < ' ' || r > '~' {
			return false
		}
	}
	return true
}

// quote is %q for values that may appear in an error, and a placeholder
// for those that look like key material (pasted into the wrong key).
func quote(s string) string {
	if !showable(s) {
		return "(value not shown: it looks like key material)"
	}
	return strconv.Quote(s)
}

// syntaxError turns the TOML decoder's error into one that shows no text
// of the file. The decoder's own messages quote the offending value (a
// key written unquoted as in `ip xfrm`: "0x0001…2223 is out of range for
// int64"), and its context form prints whole lines, so neither is ever
// used: the error says where, and what was expected there.
func syntaxError(name string, data []byte, err error) error {
	var perr toml.ParseError
	if !errors.As(err, &perr) {
		return &Error{File: name, Msg: "not valid TOML (the decoder's message is not shown: it may quote key material)"}
	}
	line := perr.Position.Line
	// Not perr.LastKey: that is the last key parsed, often on an earlier
	// line than the error.
	key, value := keyOnLine(data, line)
	what := hint(perr.Message, key, value)
	switch {
	case strings.HasPrefix(perr.Message, "unexpected EOF"):
		// Reported where the file ends, often a line after the real mistake.
		key, what = "", "the file ends inside a string, array or table opened earlier, or in a key or section header"
	case strings.Contains(perr.Message, "array terminator"):
		key, what = "", "an array is not closed with ']', or lacks a ',' between elements"
	}
	return &Error{File: name, Key: key, Msg: fmt.Sprintf(
		"line %d, column %d: not valid TOML: %s (the line is not shown: it may hold key material)", line, perr.Position.Col, what)}
}

// hint says what is wrong in terms of the key's expected kind. It reads
// the decoder's message to classify it, never to repeat it.
func hint(msg, key, value string) string {
	want, known := schema[key]
	unquoted := value != "" && value[0] != '"' && value[0] != '\''
	switch {
	case strings.Contains(msg, "already been defined") || strings.Contains(msg, "already been created"):
		return "a key or section is given twice"
	case strings.HasPrefix(msg, "expected a top-level item to end with"):
		return "unexpected text after the value (a comment starts with #)"
	case known && want == kindString && unquoted:
		example := "\"…\""
		if secretKeys[key] {
			example = "\"0x…\""
		}
		return fmt.Sprintf("the value must be a string in quotes, as in %s = %s", leaf(key), example)
	case known && want == kindStringArray && unquoted && value[0] != '[':
		return fmt.Sprintf("the value must be an array of strings, as in %s = [\"…\"]", leaf(key))
	case known && want == kindInteger && strings.Contains(msg, "out of range"):
		return "the integer is out of range (64-bit signed)"
	case known && want == kindInteger:
		return "the value must be an integer, such as 1442 or 0x1001"
	case known && want == kindBoolean:
		return "the value must be true or false"
	case strings.HasPrefix(msg, "expected value but found"):
		return "a value must be a string in quotes, a number, true, false or an array"
	case known && want == kindString:
		return "the quoted string is not closed, or holds an invalid escape (write \\\\ for \\)"
	}
	return "check the quotes, the brackets and the '=' on that line"
}

var (
	sectionLine = regexp.MustCompile(`^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$`)
	keyLine     = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+)\s*=\s*(.*)$`)
)

// keyOnLine returns the known dotted key assigned on line n (1-based) and
// the start of its value, or "" when the line assigns no known key. It is
// a line-by-line reading for error hints, not a TOML parser: a key is
// only named when the schema has it.
func keyOnLine(data []byte, n int) (key, value string) {
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return "", ""
	}
	section := ""
	for _, l := range lines[:n-1] {
		if m := sectionLine.FindStringSubmatch(l); m != nil {
			section = m[1] + "."
		}
	}
	m := keyLine.FindStringSubmatch(strings.TrimSuffix(lines[n-1], "\r"))
	if m == nil {
		return "", ""
	}
	if _, ok := schema[section+m[1]]; !ok {
		return "", ""
	}
	return section + m[1], strings.TrimSpace(m[2])
}
