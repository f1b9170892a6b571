// SPDX-License-Identifier: Apache-2.0

package kv

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// MaxDirtyRate bounds DIRTY n: the dirtier cannot touch more pages per tick
// than its buffer holds.
const MaxDirtyRate = DirtyBufferPages

// Store is the key-value state. Every method is safe for concurrent use.
type Store struct {
	mu   sync.Mutex
	data map[string]string
	seq  uint64
	// Dirtier, when set, receives DIRTY rates and reports pages dirtied.
	Dirtier *Dirtier
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{data: make(map[string]string)} }

// Handle executes one request line (without its newline) and returns the
// reply line (without newline). A write is applied before its reply is
// built, so "OK <seq>" means the write is in memory.
func (s *Store) Handle(line string) string {
	if strings.Contains(line, "\n") {
		return "ERR newline in request"
	}
	cmd, rest, _ := strings.Cut(strings.TrimRight(line, "\r"), " ")
	switch strings.ToUpper(cmd) {
	case "SET":
		k, v, ok := strings.Cut(rest, " ")
		if !ok || k == "" {
			return "ERR usage: SET key value"
		}
		return "OK " + strconv.FormatUint(s.set(k, v), 10)
	case "GET":
		if rest == "" || strings.Contains(rest, " ") {
			return "ERR usage: GET key"
		}
		v, ok := s.get(rest)
		if !ok {
			return "ERR not found"
		}
		return v
	case "INCR":
		if rest == "" || strings.Contains(rest, " ") {
			return "ERR usage: INCR key"
		}
		n, err := s.incr(rest)
		if err != nil {
			return "ERR " + err.Error()
		}
		return strconv.FormatInt(n, 10)
	case "DIRTY":
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || n > MaxDirtyRate {
			return fmt.Sprintf("ERR usage: DIRTY n (0..%d pages per 10 ms)", MaxDirtyRate)
		}
		if s.Dirtier == nil {
			return "ERR no dirtier"
		}
		s.Dirtier.SetRate(n)
		return "OK"
	case "STATS":
		return s.stats()
	default:
		return "ERR unknown command"
	}
}

func (s *Store) set(k, v string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[k] = v
	s.seq++
	return s.seq
}

func (s *Store) get(k string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[k]
	return v, ok
}

func (s *Store) incr(k string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	if v, ok := s.data[k]; ok {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, fmt.Errorf("value of %s is not an integer", k)
		}
	}
	n++
	s.data[k] = strconv.FormatInt(n, 10)
	s.seq++
	return n, nil
}

func (s *Store) stats() string {
	s.mu.Lock()
	keys, seq := len(s.data), s.seq
	s.mu.Unlock()
	var rate int
	var dirtied uint64
	if s.Dirtier != nil {
		rate, dirtied = s.Dirtier.Rate(), s.Dirtier.Dirtied()
	}
	return fmt.Sprintf("keys=%d seq=%d dirty=%d dirtied=%d", keys, seq, rate, dirtied)
}
