// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/resilire/resilire/dataplane"
)

// DefaultSocketDir holds the holders' control sockets, <vm>.sock.
const DefaultSocketDir = "/run/resilire"

// HolderConfig configures RunHolder.
type HolderConfig struct {
	VM        string        // VM name (the dataplane's pin name)
	PinRoot   string        // "" means dataplane.DefaultPinRoot
	SocketDir string        // "" means DefaultSocketDir
	Interval  time.Duration // > 0: close and release an epoch every Interval; 0: only on commit requests
	Buffer    Options
	Logger    *slog.Logger
}

// SocketPath is the control socket of vm's holder.
func SocketPath(dir, vm string) string {
	if dir == "" {
		dir = DefaultSocketDir
	}
	return filepath.Join(dir, vm+".sock")
}

// request and response are the control protocol: one JSON line each way;
// a dump response is followed by Bytes bytes of pcap.
type request struct {
	Op       string `json:"op"` // commit, dump, stats
	Epoch    uint64 `json:"epoch,omitempty"`
	HasEpoch bool   `json:"has_epoch,omitempty"`
}

type response struct {
	Error    string `json:"error,omitempty"`
	Released uint64 `json:"released,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	Stats    *Stats `json:"stats,omitempty"`
}

// RunHolder opens vm's pinned data plane, holds its output in a Buffer and
// serves commit/dump/stats requests on the control socket until ctx ends.
// Run it in the port's network namespace. On exit the held output is
// dropped, never released; the pinned programs keep holding (fail closed).
func RunHolder(ctx context.Context, cfg HolderConfig) (err error) {
	p, err := dataplane.Open(cfg.VM, cfg.PinRoot, cfg.Logger)
	if err != nil {
		return err
	}
	defer p.Close()
	b, err := New(p, cfg.Buffer)
	if err != nil {
		return err
	}
	defer b.Close()
	path := SocketPath(cfg.SocketDir, cfg.VM)
	ln, err := listenControl(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	defer ln.Close()
	h := &holder{b: b}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if cfg.Interval > 0 {
		go h.tick(ctx, cfg.Interval)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return h.tickErr()
			}
			return fmt.Errorf("control socket: %w", err)
		}
		go h.serve(c)
	}
}

// listenControl creates the control socket (0600), replacing a stale one
// but refusing to start a second holder for the same VM.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket dir: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("a holder already serves %s", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

type holder struct {
	b   *Buffer
	mu  sync.Mutex // one commit at a time (Advance then Release)
	err error      // first error of the interval loop
}

func (h *holder) tick(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := h.commit(request{}); err != nil {
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
			return
		}
	}
}

func (h *holder) tickErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// commit releases up to req.Epoch; without one (or when it names the open
// epoch) it first closes the open epoch. There is no guest to pause here:
// by hand, a frame in flight at the switch may land on either side of it,
// and either way it is released in order, never before its epoch.
func (h *holder) commit(req request) (uint64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	open := h.b.Stats().Epoch
	if !req.HasEpoch || req.Epoch == open {
		e, err := h.b.Advance()
		if err != nil {
			return 0, err
		}
		return e, h.b.Release(e)
	}
	return req.Epoch, h.b.Release(req.Epoch)
}

func (h *holder) serve(c net.Conn) {
	defer c.Close()
	// An error here is the client's connection failing: there is no one
	// left to report it to.
	_ = h.reply(c)
}

// reply answers the one request on c.
func (h *holder) reply(c net.Conn) error {
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return err
	}
	var req request
	if err := json.NewDecoder(io.LimitReader(c, 4096)).Decode(&req); err != nil {
		return writeResponse(c, response{Error: "bad request: " + err.Error()})
	}
	switch req.Op {
	case "commit":
		e, err := h.commit(req)
		return writeResponse(c, response{Released: e, Error: errString(err)})
	case "stats":
		s := h.b.Stats()
		return writeResponse(c, response{Stats: &s})
	case "dump":
		f, err := os.CreateTemp("", "rnb-dump-*.pcap")
		if err == nil {
			defer os.Remove(f.Name())
			defer f.Close()
			err = h.b.WritePcap(f)
		}
		var n int64
		if err == nil {
			n, err = f.Seek(0, io.SeekCurrent)
		}
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			return writeResponse(c, response{Error: err.Error()})
		}
		if err := writeResponse(c, response{Bytes: n}); err != nil {
			return err
		}
		_, err = io.Copy(c, f)
		return err
	default:
		return writeResponse(c, response{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

func writeResponse(w io.Writer, r response) error {
	return json.NewEncoder(w).Encode(r)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// call sends req to the holder at path and decodes the response line,
// leaving any payload in the returned reader.
func call(ctx context.Context, path string, req request) (response, *bufio.Reader, net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return response{}, nil, nil, fmt.Errorf("no holder at %s (run resilire dataplane hold): %w", path, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			c.Close()
			return response{}, nil, nil, fmt.Errorf("holder connection deadline: %w", err)
		}
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		c.Close()
		return response{}, nil, nil, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReader(c)
	var resp response
	line, err := br.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &resp)
	}
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		c.Close()
		return response{}, nil, nil, fmt.Errorf("holder %s: %w", path, err)
	}
	return resp, br, c, nil
}

// Commit asks the holder at path to release up to epoch (nil: close the
// open epoch and release it). It returns the epoch released.
func Commit(ctx context.Context, path string, epoch *uint64) (uint64, error) {
	req := request{Op: "commit"}
	if epoch != nil {
		req.Epoch, req.HasEpoch = *epoch, true
	}
	resp, _, c, err := call(ctx, path, req)
	if err != nil {
		return 0, err
	}
	c.Close()
	return resp.Released, nil
}

// HolderStats returns the Buffer counters of the holder at path.
func HolderStats(ctx context.Context, path string) (Stats, error) {
	resp, _, c, err := call(ctx, path, request{Op: "stats"})
	if err != nil {
		return Stats{}, err
	}
	c.Close()
	if resp.Stats == nil {
		return Stats{}, fmt.Errorf("holder %s: no stats in response", path)
	}
	return *resp.Stats, nil
}

// Dump writes the holder's held frames as pcap to w and returns the size.
func Dump(ctx context.Context, path string, w io.Writer) (int64, error) {
	resp, br, c, err := call(ctx, path, request{Op: "dump"})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	n, err := io.CopyN(w, br, resp.Bytes)
	if err != nil {
		return n, fmt.Errorf("receive pcap: %w", err)
	}
	return n, nil
}
