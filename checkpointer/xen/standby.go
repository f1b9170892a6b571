// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/checkpointer"
)

// ImagePlaceholder in a restore command is replaced by the image path (or
// /dev/stdin when the image is piped).
const ImagePlaceholder = "{image}"

// ErrActivated means Activate was already called (or the standby closed).
var ErrActivated = errors.New("standby already activated or closed")

// Replica is the backup's copy of guest memory in the dense numbering of the
// primary's Layout: anonymous memory, reserved lazily so that pages the
// primary never sends cost nothing.
type Replica struct {
	mem []byte
}

var _ checkpointer.Replica = (*Replica)(nil)

// MaxReplicaBytes bounds the size a primary's hello may give the replica
// (1 TiB of address space, reserved lazily).
const MaxReplicaBytes = 1 << 40

var _ checkpointer.Resizer = (*Replica)(nil)

// NewReplica allocates size bytes (a multiple of PageSize) of zeroed memory.
// A standby that does not know the guest's exact size passes PageSize: the
// primary's hello resizes it (Resize) before the first checkpoint.
func NewReplica(size uint64) (*Replica, error) {
	mem, err := mapReplica(size)
	if err != nil {
		return nil, err
	}
	return &Replica{mem: mem}, nil
}

func mapReplica(size uint64) ([]byte, error) {
	if size == 0 || size%checkpointer.PageSize != 0 || size > MaxReplicaBytes {
		return nil, fmt.Errorf("replica size %d is not a positive multiple of %d up to %d", size, checkpointer.PageSize, uint64(MaxReplicaBytes))
	}
	mem, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes of replica memory: %w", size, err)
	}
	return mem, nil
}

// Resize replaces the memory with size zeroed bytes. The backup calls it
// with the primary's size before any checkpoint is committed.
func (r *Replica) Resize(size uint64) error {
	mem, err := mapReplica(size)
	if err != nil {
		return err
	}
	if r.mem != nil {
		if err := unix.Munmap(r.mem); err != nil {
			_ = unix.Munmap(mem)
			return fmt.Errorf("unmap the old replica: %w", err)
		}
	}
	r.mem = mem
	return nil
}

// Memory is the replica memory.
func (r *Replica) Memory() []byte { return r.mem }

// Sync is a no-op: the replica is anonymous memory, written out as a
// stream only on activation.
func (r *Replica) Sync() error { return nil }

// Close unmaps the memory; Memory must not be used afterwards.
func (r *Replica) Close() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	return err
}

// StandbyOptions configure how the backup starts the guest.
type StandbyOptions struct {
	// Command is the restore command's argv; every "{image}" is replaced by
	// the image. The usual choice is
	//   xl restore /etc/resilire/<vm>.cfg {image}
	// (the domain config must match the primary's: memory, vCPUs, vif with a
	// fixed vifname so the data plane finds the port).
	Command []string
	// ImagePath is where the xl image is written (mode 0600) before the
	// command runs. Ignored when Pipe is set.
	ImagePath string
	// Pipe streams the image to the command's stdin instead of a file and
	// substitutes /dev/stdin for {image}: no copy of guest memory on disk.
	Pipe bool
	// ConfigJSON is embedded in the image as xl does (libxl JSON domain
	// config); optional when the command passes a config file.
	ConfigJSON []byte
	// Logger receives the activation record; nil discards it.
	Logger *slog.Logger
}

// Standby is the Xen implementation of checkpointer.Standby: on Activate it
// writes the replica and the last committed state as an xl image and runs
// the restore command.
type Standby struct {
	replica *Replica
	opts    StandbyOptions

	mu   sync.Mutex
	done bool
}

var _ checkpointer.Standby = (*Standby)(nil)

// NewStandby checks opts and returns a standby for replica.
func NewStandby(replica *Replica, opts StandbyOptions) (*Standby, error) {
	if len(opts.Command) == 0 {
		return nil, errors.New("xen standby: no restore command")
	}
	if !opts.Pipe && opts.ImagePath == "" {
		return nil, errors.New("xen standby: no image path (set ImagePath or Pipe)")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Standby{replica: replica, opts: opts}, nil
}

// Activate builds the image from the replica and state (a blob from
// Domain.SaveState) and runs the restore command; it returns when the
// command exits, with its output in the error if it failed. It runs once.
func (s *Standby) Activate(ctx context.Context, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return ErrActivated
	}
	s.done = true
	st, err := DecodeState(state)
	if err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	mem := s.replica.Memory()
	if err := st.fits(len(mem)); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	image := s.opts.ImagePath
	if s.opts.Pipe {
		image = "/dev/stdin"
	} else if err := s.writeImage(mem, st); err != nil {
		return err
	}
	argv := make([]string, len(s.opts.Command))
	for i, a := range s.opts.Command {
		argv[i] = strings.ReplaceAll(a, ImagePlaceholder, image)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if s.opts.Pipe {
		pr, pw, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("activate: pipe: %w", err)
		}
		cmd.Stdin = pr
		if err := cmd.Start(); err != nil {
			pr.Close()
			pw.Close()
			return fmt.Errorf("activate: start %s: %w", argv[0], err)
		}
		pr.Close()
		werr := WriteXLImage(pw, mem, st, s.opts.ConfigJSON)
		pw.Close()
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("activate: %s: %w: %s", strings.Join(argv, " "), err, tail(out.Bytes()))
		}
		if werr != nil {
			return fmt.Errorf("activate: stream image to %s: %w", argv[0], werr)
		}
	} else if err := cmd.Run(); err != nil {
		return fmt.Errorf("activate: %s: %w: %s", strings.Join(argv, " "), err, tail(out.Bytes()))
	}
	s.opts.Logger.Info("xen guest restored", "bytes", len(mem), "cmd", strings.Join(argv, " "))
	return nil
}

// writeImage writes the xl image to a temporary file beside ImagePath,
// syncs it and renames it into place, so a crash never leaves half an image
// under the final name.
func (s *Standby) writeImage(mem []byte, st *State) (err error) {
	dir := filepath.Dir(s.opts.ImagePath)
	f, err := os.CreateTemp(dir, ".resilire-image-*")
	if err != nil {
		return fmt.Errorf("activate: create image: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err = WriteXLImage(w, mem, st, s.opts.ConfigJSON); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	if err = w.Flush(); err != nil {
		return fmt.Errorf("activate: write image: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("activate: sync image: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("activate: close image: %w", err)
	}
	if err = os.Rename(f.Name(), s.opts.ImagePath); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	return nil
}

// tail returns the last lines of a command's output for an error message.
func tail(b []byte) string {
	const max = 2048
	b = bytes.TrimSpace(b)
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Close marks the standby unusable. Nothing runs before activation, so
// there is nothing to kill; the replica is the caller's to close.
func (s *Standby) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	return nil
}

// RestoreCommand is `xl restore cfg {image}`.
func RestoreCommand(cfg string) []string {
	return []string{"xl", "restore", cfg, ImagePlaceholder}
}

// DefaultStandbyOptions is the dom0 convention the CLI and the Vagrant rig
// use: the guest's xl config at /etc/resilire/<vm>.cfg (the same config the
// primary started it with, vifname fixed), the image piped into
// `xl restore`, so no copy of guest memory lands on disk.
func DefaultStandbyOptions(vm string) StandbyOptions {
	return StandbyOptions{
		Command:   RestoreCommand(ConfigPath(vm)),
		ImagePath: "/var/lib/resilire/" + vm + ".xl",
		Pipe:      true,
	}
}
