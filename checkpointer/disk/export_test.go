// SPDX-License-Identifier: Apache-2.0

package disk

// SetCrashHook sets the hook called at each staging and apply step (tests
// only); nil removes it.
func SetCrashHook(h func(phase string, i int)) { crashHook = h }
