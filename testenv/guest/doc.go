// SPDX-License-Identifier: Apache-2.0

// Package guest builds the test guest from Debian packages and our own Go
// code, with no download site other than Debian's mirror and the Go module
// proxy: Debian's cloud kernel (pinned package and sha256), its virtio
// modules and Xen front ends, and an uncompressed newc initramfs whose /init
// is the static Go program in ./init serving the kv store of ./kv.
//
// Build caches everything in one directory (the git-ignored
// testenv/assets/ by default): a second Build with unchanged inputs only
// checks stamps.
package guest
