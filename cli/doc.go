// SPDX-License-Identifier: Apache-2.0

// Package cli is the resilire command line: one file per command. Actions are
// short and delegate to the other packages; this is the only package that
// prints errors, builds log handlers and chooses exit codes.
package cli
