// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resilire/resilire/checkpointer/codec"
)

// BackupConfig configures the standby agent for one VM.
type BackupConfig struct {
	// VM is the protected VM's name; a hello for another VM is refused.
	VM      string
	Replica Replica
	Standby Standby
	Codec   codec.Codec
	// Disk, if set, is the backup's copy of the guest's disk; a primary
	// must then send one of the same size.
	Disk DiskReplica
	// Listener accepts the primary (ListenTCP; TLS already wrapped).
	Listener net.Listener
	// HeartbeatInterval and HeartbeatTimeout: a primary silent for the
	// timeout is declared dead and failover starts.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	Failover                            FailoverConfig
	// InputKeepBytes bounds the input-log frames kept for replay
	// (DefaultInputKeepBytes if zero); only used with Failover.Inject.
	InputKeepBytes int
	// Group makes this backup a VDEchp group member's (GroupBackup): a
	// checkpoint is staged and acknowledged, applied only once the group
	// committed it, and the guest goes live only on the group's order.
	Group   bool
	Logger  *slog.Logger
	Metrics *Metrics
}

// Backup receives checkpoints into the replica and takes over when the
// primary dies. Invariant 2: a checkpoint is applied whole after it was
// read and verified whole, or not at all.
type Backup struct {
	cfg       BackupConfig
	log       *slog.Logger
	m         *Metrics
	lastSeen  atomic.Int64 // unix nanos of the last frame from the current primary
	activated chan struct{}
	input     *inputKeeper

	mu        sync.Mutex // guards the fields below and every write to the replica
	state     string
	since     time.Time
	committed uint64 // last committed consistent epoch, 0 if none
	devState  []byte // device state of that checkpoint
	cur       *backupSession
	peer      string
	warned    bool
	scrub     *ScrubStatus
	// Group mode only: the acknowledged checkpoint the group has not
	// committed yet, and whether the group's recovery took the replica.
	pending    *pendingCheckpoint
	undo       undoRound
	recovering bool
}

// backupSession is the one connection currently allowed to write.
type backupSession struct {
	conn net.Conn
	done chan struct{}
}

// NewBackup checks cfg and fills in defaults.
func NewBackup(cfg BackupConfig) (*Backup, error) {
	if cfg.Replica == nil || cfg.Standby == nil || cfg.Codec == nil || cfg.Listener == nil || cfg.VM == "" {
		return nil, errors.New("backup: vm, replica, standby, codec and listener are required")
	}
	if cfg.Group && cfg.Disk != nil {
		// The disk journal applies each checkpoint's records before the
		// next one is read; a staged round would lose them.
		return nil, errors.New("backup: a group member's backup cannot replicate a disk yet")
	}
	setDefault(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setDefault(&cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil, "backup", cfg.VM)
	}
	b := &Backup{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, activated: make(chan struct{}), input: newInputKeeper(cfg.InputKeepBytes)}
	b.setStateLocked(StateWaiting)
	switch {
	case cfg.Failover.Fence == nil && cfg.Failover.UnsafeNoFence:
		b.log.Warn("no fence command and --unsafe-no-fence: this backup will go live WITHOUT fencing (split brain possible)", "vm", cfg.VM)
	case cfg.Failover.Fence == nil:
		b.log.Warn("no fence command: this backup will refuse to go live", "vm", cfg.VM)
	}
	return b, nil
}

// Serve accepts the primary's sessions and watches its heartbeats until
// ctx ends. Once the guest was activated here the listener is closed and
// Serve waits for ctx, so status and metrics stay available.
func (b *Backup) Serve(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); b.watch(ctx, errc) }()
	go func() { <-ctx.Done(); b.cfg.Listener.Close() }()
	for {
		conn, err := b.cfg.Listener.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() { defer wg.Done(); b.handle(ctx, conn) }()
	}
	cancel()
	b.mu.Lock()
	if s := b.cur; s != nil {
		s.conn.Close()
	}
	b.mu.Unlock()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	case <-b.activated:
		// The guest runs here now; stay up (status, metrics) until told to stop.
		<-parent.Done()
		return nil
	default:
		return nil
	}
}

// Activated is closed once the guest runs on this host.
func (b *Backup) Activated() <-chan struct{} { return b.activated }

// Committed returns the last committed epoch and its device state.
func (b *Backup) Committed() (uint64, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.committed, b.devState
}

// Status reports the backup's state.
func (b *Backup) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Status{Role: "backup", VM: b.cfg.VM, State: b.state, Epoch: b.committed, Peer: b.peer, Since: b.since, Scrub: b.scrub}
	if b.pending != nil {
		st.Staged = b.pending.m.Epoch
	}
	st.Undo, st.UndoBytes = b.undo.epoch, len(b.undo.data)
	return st
}

func (b *Backup) setStateLocked(s string) {
	b.state, b.since = s, time.Now()
	b.m.setState(s)
}

func (b *Backup) touch() { b.lastSeen.Store(time.Now().UnixNano()) }

// watch declares the primary dead after HeartbeatTimeout of silence and
// runs the failover once a consistent checkpoint is held.
func (b *Backup) watch(ctx context.Context, errc chan<- error) {
	t := time.NewTicker(max(b.cfg.HeartbeatTimeout/8, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last := b.lastSeen.Load()
		if last == 0 || time.Since(time.Unix(0, last)) < b.cfg.HeartbeatTimeout {
			continue
		}
		b.mu.Lock()
		st, committed := b.state, b.committed
		if st != StateStandby && !b.warned && st != StateFenceFailed {
			b.warned = true
			b.log.Error("primary lost before the first consistent checkpoint: nothing to resume", "vm", b.cfg.VM)
		}
		if b.cfg.Group && st == StateStandby && !b.warned {
			// A member never goes live alone: the whole group rolls back
			// to its last committed round, on the coordinator's order.
			b.warned = true
			b.log.Error("primary lost: waiting for the group's recovery order", "vm", b.cfg.VM, "epoch", committed)
		}
		b.mu.Unlock()
		if st != StateStandby || committed == 0 || b.cfg.Group {
			continue
		}
		b.log.Error("primary lost: heartbeat timeout", "vm", b.cfg.VM, "epoch", committed, "dur", b.cfg.HeartbeatTimeout)
		err := b.failover(ctx, "heartbeat-timeout")
		if err == nil {
			b.cfg.Listener.Close()
			return
		}
		if errors.Is(err, ErrNothingCommitted) {
			// A switchover's activation got there first: it owns the failover.
			return
		}
		if !errors.Is(err, ErrFenceFailed) && !errors.Is(err, ErrNoFence) {
			errc <- err
			b.cfg.Listener.Close()
			return
		}
	}
}
