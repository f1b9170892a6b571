// SPDX-License-Identifier: Apache-2.0

package bpf

// CLANG and STRIP come from the Makefile (clang-14, llvm-strip-14).
//go:generate go tool bpf2go -cc $CLANG -cflags "-O2 -g -Wall -Werror" -target bpfel -type frame_hdr -type port_config -type counter -type mode -type set_config_arg -type set_what -type input_log_kind -type peer_key -type port_flags Capture capture.c -- -I./include
//go:generate go tool bpf2go -cc $CLANG -cflags "-O2 -g -Wall -Werror" -target bpfel Redirect redirect.c -- -I./include
//go:generate go tool bpf2go -cc $CLANG -cflags "-O2 -g -Wall -Werror" -target bpfel -type frame_flags Inputlog inputlog.c -- -I./include
