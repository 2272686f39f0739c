// Package control is the local control socket of a running gresec: a Unix
// socket only root can reach, one JSON request and one JSON answer per
// connection.
package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Request is what a client asks.
type Request struct {
	Command string `json:"command"`
}

// Response carries either a result or an error.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Handler answers one command.
type Handler func(command string) (any, error)

// Server is a listening control socket.
type Server struct {
	ln   net.Listener
	path string
}

// maxRequest bounds what a client can make us read.
const maxRequest = 4096

// Listen creates the socket at path, in a directory only root can enter.
// A live socket at path means another instance runs: that is an error; a
// stale one (from a crash) is replaced.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s is in use: is another gresec running for this interface?", path)
		}
		os.Remove(path)
	}
	// No window in which the socket exists with looser permissions.
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return &Server{ln: ln, path: path}, nil
}

// Serve answers connections until Close.
func (s *Server) Serve(h Handler) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.answer(c, h)
	}
}

func (s *Server) answer(c net.Conn, h Handler) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var req Request
	line, err := bufio.NewReader(io.LimitReader(c, maxRequest)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return
	}
	var resp Response
	if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "bad request: expected one JSON object {\"command\": ...}"
	} else if v, err := h(req.Command); err != nil {
		resp.Error = err.Error()
	} else if resp.Result, err = json.Marshal(v); err != nil {
		resp.Error = err.Error()
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	os.Remove(s.path)
	return err
}

// Query sends one command to the instance at path and returns its result.
func Query(path, command string) (json.RawMessage, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("no gresec answering at %s (is it running? are you root?): %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(c).Encode(Request{Command: command}); err != nil {
		return nil, err
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("reading answer from %s: %w", path, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return resp.Result, nil
}
