// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestGroupFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "coordinate"}, `Required flag "member" not set`},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1"}, "1 given, a group has at least two"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "a=127.0.0.1:2"}, "want a unique NAME=HOST:PORT"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b"}, "want a unique NAME=HOST:PORT"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=nohost"}, "missing port"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--interval", "0s"}, "must be positive"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--standby", "a=127.0.0.1:3"}, "1 members without a standby"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--standby", "c=127.0.0.1:3", "--standby", "b=127.0.0.1:4"}, `standby "c" has no member`},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--standby", "a=x"}, "missing port"},
		// Nobody listens: the coordinator cannot ask where the members
		// are, and says which.
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--standby", "a=127.0.0.1:3", "--standby", "b=127.0.0.1:4",
			"--round-timeout", "200ms"}, "a did not say where it is"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--round-timeout", "200ms"}, "group member failed"},
		{[]string{"group", "coordinate", "--member", "a=127.0.0.1:1", "--member", "b=127.0.0.1:2", "--takeover-after", "1s"}, "at least twice --round-timeout (1s)"},
	} {
		var out, errb bytes.Buffer
		if Run(context.Background(), &out, &errb, append([]string{"resilire"}, tc.args...)) == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit 0 or error without %q: %q", tc.args, tc.want, errb.String())
		}
	}
}
