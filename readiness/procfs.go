package readiness

import (
	"bytes"
	"errors"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The functions here read /proc through directory descriptors and
// NUL-terminated byte paths, so that a check allocates nothing: the path
// helpers of package unix copy every string they are given.

// cpath appends name and a NUL to p[:0].
func cpath(p []byte, name string) []byte {
	return append(append(p[:0], name...), 0)
}

// cpathNum appends prefix, n, suffix and a NUL to p[:0].
func cpathNum(p []byte, prefix string, n int, suffix string) []byte {
	p = append(p[:0], prefix...)
	p = strconv.AppendInt(p, int64(n), 10)
	p = append(p, suffix...)
	return append(p, 0)
}

// openat opens the NUL-terminated path relative to dirfd, read-only and
// close-on-exec.
func openat(dirfd int, path []byte) (int, error) {
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&path[0])), unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// readlinkat reads the symbolic link at the NUL-terminated path relative
// to dirfd into buf and returns the part of buf filled.
func readlinkat(dirfd int, path, buf []byte) ([]byte, error) {
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&path[0])), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return nil, errno
	}
	return buf[:n], nil
}

// readAt reads the file at path relative to dirfd into buf with a single
// read, which /proc answers whole for the small files read here.
func readAt(dirfd int, path, buf []byte) ([]byte, error) {
	fd, err := openat(dirfd, path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// eachNumber calls fn with every entry of directory fd whose name is a
// decimal number (a PID, TID or file descriptor), until fn returns false.
// buf holds the directory entries read.
func eachNumber(fd int, buf []byte, fn func(n int) bool) error {
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n == 0 {
			return err
		}
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8 // linux_dirent64.d_reclen
			if num, ok := atoi(b[19:reclen]); ok && !fn(num) {
				return nil
			}
			b = b[reclen:]
		}
	}
}

// eachLine calls fn with every line of the file fd, without its newline,
// until fn returns false. buf must hold the longest line.
func eachLine(fd int, buf []byte, fn func(line []byte) bool) error {
	kept := 0
	for {
		n, err := unix.Read(fd, buf[kept:])
		if err != nil || n == 0 {
			return err
		}
		b := buf[:kept+n]
		for {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				break
			}
			if !fn(b[:i]) {
				return nil
			}
			b = b[i+1:]
		}
		kept = copy(buf, b)
		if kept == len(buf) {
			kept = 0 // a line longer than buf: not one we look for
		}
	}
}

// atoi parses the decimal number at the start of b, up to a NUL or the end.
func atoi(b []byte) (int, bool) {
	n, digits := 0, 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
		digits++
	}
	if digits == 0 || digits < len(b) && b[digits] != 0 {
		return 0, false
	}
	return n, true
}

// gone reports whether err means the process or thread read has exited.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}
