package control

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestQueryAnswersAndPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "g.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go s.Serve(func(cmd string) (any, error) {
		if cmd == "status" {
			return map[string]int{"packets": 7}, nil
		}
		return nil, errors.New("unknown command " + cmd)
	})

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %#o, want 0600", st.Mode().Perm())
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %#o, want 0700", dir.Mode().Perm())
	}

	res, err := Query(path, "status")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := json.Unmarshal(res, &v); err != nil || v["packets"] != 7 {
		t.Fatalf("result %s (%v)", res, err)
	}
	if _, err := Query(path, "nope"); err == nil || !strings.Contains(err.Error(), "unknown command nope") {
		t.Fatalf("unknown command: %v", err)
	}

	// A second instance must not steal a live socket.
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen: %v", err)
	}

	// Garbage and oversized requests get an error answer, not a hang.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(strings.Repeat("x", 10000) + "\n"))
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil || !strings.HasPrefix(resp.Error, "bad request") {
		t.Fatalf("garbage request: %+v %v", resp, err)
	}
	c.Close()
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Close left the socket behind: %v", err)
	}
}
