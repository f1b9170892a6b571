// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLine bounds a request or reply line, "\n" included. A longer request
// is answered with ERR and closes the connection.
const MaxLine = 512

// request is a parsed request line.
type request struct {
	op     byte // 'T' transfer, 'A' audit
	id     uint64
	src    int
	dst    int
	amount int64
}

var errMalformed = errors.New("malformed request")

// parseRequest parses one request line (without its "\n"). It accepts only
// what a transfer can carry out: accounts in range, distinct, and a positive
// amount.
func parseRequest(line string) (request, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return request{}, errMalformed
	}
	switch {
	case f[0] == "A" && len(f) == 1:
		return request{op: 'A'}, nil
	case f[0] == "T" && len(f) == 5:
	default:
		return request{}, errMalformed
	}
	r := request{op: 'T'}
	var err error
	if r.id, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return request{}, fmt.Errorf("%w: id %q", errMalformed, f[1])
	}
	if r.src, err = account(f[2]); err != nil {
		return request{}, err
	}
	if r.dst, err = account(f[3]); err != nil {
		return request{}, err
	}
	if r.src == r.dst {
		return request{}, fmt.Errorf("%w: transfer to the same account", errMalformed)
	}
	if r.amount, err = strconv.ParseInt(f[4], 10, 64); err != nil || r.amount <= 0 {
		return request{}, fmt.Errorf("%w: amount %q", errMalformed, f[4])
	}
	return r, nil
}

func account(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= Accounts {
		return 0, fmt.Errorf("%w: account %q", errMalformed, s)
	}
	return n, nil
}

// String is the request's line, without "\n".
func (r request) String() string {
	if r.op == 'A' {
		return "A"
	}
	return fmt.Sprintf("T %d %d %d %d", r.id, r.src, r.dst, r.amount)
}

// parseSummary parses an audit's "END <sum> <accounts> <transfers> <integrity>"
// line; integrity is the rest of the line.
func parseSummary(line string) (auditSummary, error) {
	var s auditSummary
	rest, ok := strings.CutPrefix(line, "END ")
	if !ok {
		return s, fmt.Errorf("audit: unexpected reply %q", line)
	}
	f := strings.SplitN(rest, " ", 4)
	if len(f) != 4 {
		return s, fmt.Errorf("audit: bad summary %q", line)
	}
	var err error
	if s.sum, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return s, fmt.Errorf("audit: bad sum in %q", line)
	}
	if s.accounts, err = strconv.Atoi(f[1]); err != nil {
		return s, fmt.Errorf("audit: bad account count in %q", line)
	}
	if s.transfers, err = strconv.Atoi(f[2]); err != nil {
		return s, fmt.Errorf("audit: bad transfer count in %q", line)
	}
	s.integrity = f[3]
	return s, nil
}

func (s auditSummary) String() string {
	return fmt.Sprintf("END %d %d %d %s", s.sum, s.accounts, s.transfers, s.integrity)
}
