package ike

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestArchitectureDocStateDiagrams: the state diagrams of
// docs/architecture.md have exactly the transitions of ikeTransitions and
// childTransitions, so the page the next person reads first stays true.
func TestArchitectureDocStateDiagrams(t *testing.T) {
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	edge := regexp.MustCompile(`^\s*(\w+) --> (\w+)`)
	var diagrams []map[string]bool
	for _, block := range strings.Split(string(doc), "```mermaid")[1:] {
		block, _, _ = strings.Cut(block, "```")
		edges := map[string]bool{}
		for _, line := range strings.Split(block, "\n") {
			if m := edge.FindStringSubmatch(line); m != nil {
				edges[strings.ToLower(m[1])+" -> "+strings.ToLower(m[2])] = true
			}
		}
		diagrams = append(diagrams, edges)
	}
	want := func(name string, got map[string]bool, table map[string][]string) {
		w := map[string]bool{}
		for from, tos := range table {
			for _, to := range tos {
				w[from+" -> "+to] = true
			}
		}
		var missing, extra []string
		for e := range w {
			if !got[e] {
				missing = append(missing, e)
			}
		}
		for e := range got {
			if !w[e] {
				extra = append(extra, e)
			}
		}
		slices.Sort(missing)
		slices.Sort(extra)
		if len(missing)+len(extra) > 0 {
			t.Errorf("%s diagram in docs/architecture.md: missing %q, not in state.go %q", name, missing, extra)
		}
	}
	ike, child := map[string][]string{}, map[string][]string{}
	for from, tos := range ikeTransitions {
		for _, to := range tos {
			ike[from.String()] = append(ike[from.String()], to.String())
		}
	}
	for from, tos := range childTransitions {
		for _, to := range tos {
			child[from.String()] = append(child[from.String()], to.String())
		}
	}
	if len(diagrams) != 2 {
		t.Fatalf("%d mermaid diagrams in docs/architecture.md, want 2 (IKE SA, CHILD_SA)", len(diagrams))
	}
	want("IKE SA", diagrams[0], ike)
	want("CHILD_SA", diagrams[1], child)
}
