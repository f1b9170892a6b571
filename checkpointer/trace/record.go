// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Options configure Record. Exactly one of Cmd and PID is set, and at least
// one of Epochs and Duration.
type Options struct {
	Cmd      []string      // command to start and trace; it is stopped when recording ends
	PID      int           // running process to trace; it is left running
	Name     string        // trace name; default the command's base name
	Dir      string        // output directory
	Interval time.Duration // how long the process runs between two pauses; default 50ms
	Epochs   int           // stop after this many epochs (0: no count bound)
	Duration time.Duration // stop after this long (0: no time bound)
	Freeze   Freeze        // FreezeSIGSTOP (default) or FreezeCgroup
	MaxPages uint64        // bound on the flat page space; default MaxPages
	// Stdin, Stdout and Stderr are given to Cmd (nil: /dev/null).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// OnEpoch, if set, runs after each epoch is taken (and queued for
	// writing), while the process runs; an error aborts the recording (the
	// trace is discarded).
	OnEpoch func(EpochInfo) error
	Logger  *slog.Logger
}

// EpochInfo describes one recorded epoch.
type EpochInfo struct {
	Seq   int
	Pages int           // pages recorded in this epoch
	Space uint64        // size of the flat page space so far, in pages
	Pause time.Duration // how long the process stayed paused
}

// maxEpochs bounds a recording whatever the options say.
const maxEpochs = 100000

// Record traces a process until Epochs or Duration is reached, the process
// exits, or ctx is cancelled, and writes the trace to Dir. Ending early that
// way is not an error: the epochs so far form the trace. The process is
// always resumed before Record returns; a process Record started is
// terminated (SIGTERM, then SIGKILL) and reaped.
func Record(ctx context.Context, opts Options) (meta Meta, err error) {
	if err := opts.check(); err != nil {
		return meta, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pid, exited := opts.PID, make(chan struct{})
	if len(opts.Cmd) > 0 {
		cmd := exec.Command(opts.Cmd[0], opts.Cmd[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
		if err := cmd.Start(); err != nil {
			return meta, fmt.Errorf("start %s: %w", opts.Cmd[0], err)
		}
		go func() { _ = cmd.Wait(); close(exited) }()
		defer terminate(cmd.Process, exited)
		pid = cmd.Process.Pid
	} else if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return meta, fmt.Errorf("process %d: %w", pid, err)
	}
	meta = Meta{Name: opts.Name, Command: opts.Cmd, IntervalMS: int(opts.Interval / time.Millisecond), PID: pid, Freeze: string(opts.Freeze)}
	if meta.Name == "" {
		meta.Name = procName(pid, opts.Cmd)
	}
	if meta.Command == nil {
		meta.Command = procCmdline(pid)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return meta, fmt.Errorf("open process memory: %w", err)
	}
	defer mem.Close()
	fr, err := newFreezer(opts.Freeze, pid)
	if err != nil {
		return meta, err
	}
	defer func() {
		if cerr := fr.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	w, err := Create(opts.Dir)
	if err != nil {
		return meta, err
	}
	defer w.Close()
	rec := &recorder{pid: pid, mem: mem, fr: fr, space: space{maxPages: opts.MaxPages}}
	defer rec.close()
	bw := newBgWriter(w)
	pause, err := rec.loop(ctx, opts, exited, bw, log)
	if werr := bw.finish(); err == nil {
		err = werr
	}
	if err != nil {
		return meta, err
	}
	if w.Epochs() == 0 {
		return meta, fmt.Errorf("process %d exited before the first epoch", pid)
	}
	meta.Pages, meta.Mappings = rec.space.pages, rec.space.mappings()
	meta.PauseUS = pause.Microseconds() / int64(w.Epochs())
	if err := w.Finish(meta); err != nil {
		return meta, err
	}
	meta.Epochs = w.Epochs()
	return meta, nil
}

func (o *Options) check() error {
	if (len(o.Cmd) > 0) == (o.PID > 0) {
		return errors.New("record: set exactly one of a command and a pid")
	}
	if o.Dir == "" {
		return errors.New("record: no output directory")
	}
	if o.Epochs <= 0 && o.Duration <= 0 {
		return errors.New("record: set a number of epochs or a duration")
	}
	if o.Epochs > maxEpochs || o.Epochs < 0 || o.Duration < 0 {
		return fmt.Errorf("record: epochs %d (max %d) or duration %v out of range", o.Epochs, maxEpochs, o.Duration)
	}
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.Interval < time.Millisecond {
		return fmt.Errorf("record: interval %v below 1ms", o.Interval)
	}
	if o.Freeze == "" {
		o.Freeze = FreezeSIGSTOP
	}
	if o.MaxPages == 0 || o.MaxPages > MaxPages {
		o.MaxPages = MaxPages
	}
	return nil
}

// loop records epochs until a bound is reached; it returns the total pause.
// The process runs Interval between the end of one pause and the start of
// the next (as a Remus guest runs an epoch between checkpoints), whatever
// the pause costs, so each epoch holds Interval of work; only when comparing
// an epoch takes longer than Interval, or the writer falls queueDepth epochs
// behind, does the process run longer.
func (r *recorder) loop(ctx context.Context, o Options, exited <-chan struct{}, w *bgWriter, log *slog.Logger) (time.Duration, error) {
	start := time.Now()
	var total time.Duration
	for seq := 0; o.Epochs <= 0 || seq < o.Epochs; seq++ {
		select {
		case <-exited:
			return total, nil
		default:
		}
		pfns, data, pause, err := r.epoch(seq)
		if errors.Is(err, errExited) {
			log.Debug("traced process exited", "epoch", seq)
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("epoch %d: %w", seq, err)
		}
		total += pause
		if err := w.put(pfns, data); err != nil {
			return total, err
		}
		log.Debug("epoch recorded", "epoch", seq, "pages", len(pfns), "bytes", len(pfns)*PageSize, "dur", pause)
		if o.OnEpoch != nil {
			if err := o.OnEpoch(EpochInfo{Seq: seq, Pages: len(pfns), Space: r.space.pages, Pause: pause}); err != nil {
				return total, fmt.Errorf("epoch %d: %w", seq, err)
			}
		}
		if o.Duration > 0 && time.Since(start) >= o.Duration {
			break
		}
		select {
		case <-ctx.Done():
			return total, nil
		case <-exited:
			return total, nil
		case <-time.After(time.Until(r.resumed.Add(o.Interval))):
		}
	}
	return total, nil
}

// terminate resumes, then ends and reaps a process Record started.
func terminate(p *os.Process, exited <-chan struct{}) {
	_ = p.Signal(syscall.SIGCONT)
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(3 * time.Second):
	}
	_ = p.Kill()
	<-exited
}

func procName(pid int, cmd []string) string {
	if len(cmd) > 0 {
		return filepath.Base(cmd[0])
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func procCmdline(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}
