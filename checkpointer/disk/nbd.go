// SPDX-License-Identifier: Apache-2.0

package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The NBD protocol, fixed newstyle, as far as QEMU's nbd client needs it
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
const (
	nbdMagic   = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic   = 0x49484156454f5054 // "IHAVEOPT"
	repMagic   = 0x0003e889045565a9 // option reply
	reqMagic   = 0x25609513         // transmission request
	replyMagic = 0x67446698         // simple reply

	hsFixedNewstyle = 1 << 0
	hsNoZeroes      = 1 << 1

	optExportName = 1
	optAbort      = 2
	optList       = 3
	optInfo       = 6
	optGo         = 7

	repAck      = 1
	repServer   = 2
	repInfo     = 3
	repErrUnsup = 1<<31 | 1
	repErrInval = 1<<31 | 3

	infoExport    = 0
	infoBlockSize = 3

	tfHasFlags  = 1 << 0
	tfSendFlush = 1 << 2
	tfSendFUA   = 1 << 3
	transFlags  = tfHasFlags | tfSendFlush | tfSendFUA

	cmdRead  = 0
	cmdWrite = 1
	cmdDisc  = 2
	cmdFlush = 3
	cmdFUA   = 1 << 0

	errIO    = 5
	errInval = 22
	errNoSpc = 28

	// maxOptLen bounds an option's data during the handshake.
	maxOptLen = 4 << 10
	// MaxRequest is the largest READ or WRITE the export accepts (and
	// advertises as the maximum block size).
	MaxRequest = 4 << 20
)

// errAbort ends a handshake the client aborted: not a failure.
var errAbort = errors.New("nbd: client aborted the handshake")

// handshake runs the server side of the fixed-newstyle negotiation until
// the client picks the (single) export with NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME. Any export name is accepted.
func handshake(rw io.ReadWriter, size int64) error {
	var b []byte
	b = binary.BigEndian.AppendUint64(b, nbdMagic)
	b = binary.BigEndian.AppendUint64(b, optMagic)
	b = binary.BigEndian.AppendUint16(b, hsFixedNewstyle|hsNoZeroes)
	if _, err := rw.Write(b); err != nil {
		return fmt.Errorf("nbd greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(rw, cf[:]); err != nil {
		return fmt.Errorf("nbd client flags: %w", err)
	}
	flags := binary.BigEndian.Uint32(cf[:])
	if flags&^(hsFixedNewstyle|hsNoZeroes) != 0 || flags&hsFixedNewstyle == 0 {
		return fmt.Errorf("client flags %#x: %w", flags, ErrProtocol)
	}
	noZeroes := flags&hsNoZeroes != 0
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(rw, hdr[:]); err != nil {
			return fmt.Errorf("nbd option: %w", err)
		}
		if binary.BigEndian.Uint64(hdr[:]) != optMagic {
			return fmt.Errorf("option magic: %w", ErrProtocol)
		}
		opt, n := binary.BigEndian.Uint32(hdr[8:]), binary.BigEndian.Uint32(hdr[12:])
		if n > maxOptLen {
			return fmt.Errorf("option %d: %d bytes: %w", opt, n, ErrProtocol)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(rw, data); err != nil {
			return fmt.Errorf("nbd option %d data: %w", opt, err)
		}
		done, err := option(rw, opt, data, size, noZeroes)
		if err != nil || done {
			return err
		}
	}
}

// option answers one option; done reports that transmission starts.
func option(w io.Writer, opt uint32, data []byte, size int64, noZeroes bool) (done bool, err error) {
	switch opt {
	case optExportName:
		b := binary.BigEndian.AppendUint64(nil, uint64(size))
		b = binary.BigEndian.AppendUint16(b, transFlags)
		if !noZeroes {
			b = append(b, make([]byte, 124)...)
		}
		_, err := w.Write(b)
		return true, err
	case optAbort:
		_ = optReply(w, opt, repAck, nil)
		return true, errAbort
	case optList:
		if len(data) != 0 {
			return false, optReply(w, opt, repErrInval, nil)
		}
		if err := optReply(w, opt, repServer, []byte{0, 0, 0, 0}); err != nil {
			return false, err
		}
		return false, optReply(w, opt, repAck, nil)
	case optInfo, optGo:
		wantBS, ok := parseInfoRequest(data)
		if !ok {
			return false, optReply(w, opt, repErrInval, nil)
		}
		exp := binary.BigEndian.AppendUint16(nil, infoExport)
		exp = binary.BigEndian.AppendUint64(exp, uint64(size))
		exp = binary.BigEndian.AppendUint16(exp, transFlags)
		if err := optReply(w, opt, repInfo, exp); err != nil {
			return false, err
		}
		if wantBS {
			bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
			bs = binary.BigEndian.AppendUint32(bs, 1)
			bs = binary.BigEndian.AppendUint32(bs, BlockSize)
			bs = binary.BigEndian.AppendUint32(bs, MaxRequest)
			if err := optReply(w, opt, repInfo, bs); err != nil {
				return false, err
			}
		}
		return opt == optGo, optReply(w, opt, repAck, nil)
	}
	return false, optReply(w, opt, repErrUnsup, nil)
}

// parseInfoRequest checks NBD_OPT_INFO/GO data (name length, name, count,
// info types) and reports whether the block size was asked for.
func parseInfoRequest(d []byte) (wantBlockSize, ok bool) {
	if len(d) < 4 {
		return false, false
	}
	n := binary.BigEndian.Uint32(d)
	if uint64(n)+6 > uint64(len(d)) {
		return false, false
	}
	d = d[4+n:]
	k := int(binary.BigEndian.Uint16(d))
	d = d[2:]
	if len(d) != 2*k {
		return false, false
	}
	for i := 0; i < k; i++ {
		if binary.BigEndian.Uint16(d[2*i:]) == infoBlockSize {
			wantBlockSize = true
		}
	}
	return wantBlockSize, true
}

func optReply(w io.Writer, opt, typ uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, repMagic)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := w.Write(append(b, data...)); err != nil {
		return fmt.Errorf("nbd option reply: %w", err)
	}
	return nil
}
