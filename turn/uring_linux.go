//go:build linux && (amd64 || arm64)

package turn

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// io_uring's ABI (include/uapi/linux/io_uring.h); x/sys/unix has the
// system call numbers only.
const (
	uringOffSQRing = 0
	uringOffSQEs   = 0x10000000

	uringOpNop     = 0
	uringOpSendmsg = 9

	uringSetupSubmitAll = 1 << 7 // IORING_SETUP_SUBMIT_ALL (Linux 5.18): a failing entry does not stop the rest
	uringFeatSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP (Linux 5.4): SQ and CQ rings in one mapping
	uringEnterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS

	uringPending = int32(-1 << 31) // run's result for an entry not completed yet
)

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	_                                                                      [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, _ uint32
		_                                                           uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, _ uint32
		_                                                           uint64
	}
}

type uringSQE struct {
	opcode, flags uint8
	ioprio        uint16
	fd            int32
	off, addr     uint64
	len, opFlags  uint32
	userData      uint64
	_             [24]byte // buf_index, personality, splice_fd_in, addr3, pad
}

type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// uring is an io_uring instance that submits a batch of sendmsg(2)s and
// waits for their results in one io_uring_enter(2). Used by one goroutine
// at a time; it never allocates after newURing.
//
// It does nothing about descriptor lifetimes: the caller keeps every
// descriptor it names open for the whole of run (the kernel looks a
// descriptor up when it issues the entry, inside run's io_uring_enter).
type uring struct {
	fd       int
	rings    []byte // SQ and CQ rings, one mapping
	sqeMem   []byte
	sqes     []uringSQE
	cqes     []uringCQE
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	tail     uint32 // the next SQ tail, published by run
	capacity int
	broken   bool // run could not account for an entry: use no more
}

// newURing sets up a ring of entries submission slots (a power of two).
// It fails where io_uring is missing or forbidden (ENOSYS, EPERM,
// kernel.io_uring_disabled, seccomp) or older than Linux 5.18.
func newURing(entries uint32) (*uring, error) {
	var p uringParams
	p.flags = uringSetupSubmitAll
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, e
	}
	r := &uring{fd: int(fd)}
	if p.features&uringFeatSingleMmap == 0 {
		r.close()
		return nil, unix.EOPNOTSUPP
	}
	size := max(p.sqOff.array+4*p.sqEntries, p.cqOff.cqes+uint32(unsafe.Sizeof(uringCQE{}))*p.cqEntries)
	var err error
	if r.rings, err = unix.Mmap(r.fd, uringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, err
	}
	if r.sqeMem, err = unix.Mmap(r.fd, uringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(uringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, err
	}
	u32 := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.rings[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(p.sqOff.head), u32(p.sqOff.tail), *u32(p.sqOff.ringMask)
	r.cqHead, r.cqTail, r.cqMask = u32(p.cqOff.head), u32(p.cqOff.tail), *u32(p.cqOff.ringMask)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&r.rings[p.cqOff.cqes])), p.cqEntries)
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&r.rings[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i) // ring position i uses entry i
	}
	r.tail = *r.sqTail
	r.capacity = int(p.sqEntries)
	return r, nil
}

// sendmsg queues sendmsg(fd, msg, MSG_DONTWAIT) under user (an index
// below run's len(res)). MSG_DONTWAIT: a full send buffer completes the
// entry with -EAGAIN at once instead of parking it in the kernel. At most
// capacity entries between runs.
func (r *uring) sendmsg(user uint64, fd int32, msg *unix.Msghdr) {
	r.sqes[r.tail&r.sqMask] = uringSQE{opcode: uringOpSendmsg, fd: fd, addr: uint64(uintptr(unsafe.Pointer(msg))), len: 1,
		opFlags: unix.MSG_DONTWAIT, userData: user}
	r.tail++
}

// nop queues an entry that does nothing, under user.
func (r *uring) nop(user uint64) {
	r.sqes[r.tail&r.sqMask] = uringSQE{opcode: uringOpNop, fd: -1, userData: user}
	r.tail++
}

// run submits the entries queued since the last run, len(res) of
// them, with users 0..len(res)-1, and waits for their results: bytes
// sent or -errno in res[user]. On return no entry it was given is left
// for a later io_uring_enter: one the kernel refused to take is withdrawn
// with result -errno, so it can never be issued after the caller has let
// its descriptor go. UDP sends with MSG_DONTWAIT complete during
// the submission, so the call does not block; a raw system call, as in
// sender.
func (r *uring) run(res []int32) {
	for i := range res {
		res[i] = uringPending
	}
	atomic.StoreUint32(r.sqTail, r.tail)
	for done, tries := 0, 0; done < len(res); tries++ {
		pending := r.tail - atomic.LoadUint32(r.sqHead)
		_, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(pending), uintptr(len(res)-done),
			uringEnterGetEvents, 0, 0)
		done += r.reap(res)
		if e == 0 || (e == unix.EINTR && tries < 64) {
			continue
		}
		// The kernel refuses work (EAGAIN, ENOMEM, EBUSY: out of request
		// memory, a CQ overflow) or the ring is broken: what it has not
		// taken is withdrawn (the tail goes back to the kernel's head,
		// which it only moves inside io_uring_enter) and dropped, as a
		// failed sendto would be.
		head := atomic.LoadUint32(r.sqHead)
		for pos := head; pos != r.tail; pos++ {
			if u := r.sqes[pos&r.sqMask].userData; u < uint64(len(res)) {
				res[u] = -int32(e)
				done++
			}
		}
		r.tail = head
		atomic.StoreUint32(r.sqTail, head)
		if done < len(res) { // taken but not completed: not seen with UDP sends
			r.broken = true // late completions would land in another batch's results
			for i, v := range res {
				if v == uringPending {
					res[i] = -int32(unix.EIO)
				}
			}
			return
		}
	}
}

// reap consumes the completion queue, storing results in res, and
// returns how many results it stored.
func (r *uring) reap(res []int32) int {
	n := 0
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		c := &r.cqes[head&r.cqMask]
		if c.userData < uint64(len(res)) {
			res[c.userData] = c.res
			n++
		}
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// close unmaps the rings and closes the ring's descriptor.
func (r *uring) close() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.rings != nil {
		_ = unix.Munmap(r.rings)
	}
	r.sqes, r.cqes, r.sqeMem, r.rings = nil, nil, nil, nil
	_ = unix.Close(r.fd)
}
