package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// tomlKeys lists "section.key" for every key the decoder accepts.
func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("toml"), ",")[0]
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, tomlKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// TestEveryKeyDocumented: the reference (docs/configuration.md) and the
// man page (gresec.toml(5)) describe every key the parser accepts, under
// its section.
func TestEveryKeyDocumented(t *testing.T) {
	md, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	man, err := os.ReadFile("../man/gresec.toml.5")
	if err != nil {
		t.Fatal(err)
	}
	keys := tomlKeys(reflect.TypeOf(file{}), "")
	if len(keys) < 30 {
		t.Fatalf("found only %d keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		section, key, _ := strings.Cut(k, ".")
		if !strings.Contains(string(md), "## ["+section+"]") || !strings.Contains(string(md), "`"+key+"`") {
			t.Errorf("docs/configuration.md does not document %s", k)
		}
		if !strings.Contains(string(man), ".SS ["+section+"]") || !strings.Contains(string(man), key) {
			t.Errorf("man/gresec.toml.5 does not document %s", k)
		}
	}
}
