package readiness

import (
	"bytes"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// scanFDs lists the process' descriptors of the sockets in p.fds, of its
// other sockets in p.conns and its epoll descriptors in p.epolls, reading
// each /proc/PID/fd link.
func (p *proc) scanFDs() error {
	p.fds, p.conns, p.epolls = p.fds[:0], p.conns[:0], p.epolls[:0]
	dir, err := openat(p.dir, cpath(p.path, "fd"))
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	var linkErr error
	err = eachNumber(dir, p.dents, func(fd int) bool {
		link, err := readlinkat(dir, cpathNum(p.path, "", fd, ""), p.link)
		switch {
		case err == nil:
			p.classify(fd, link)
		case !gone(err): // a descriptor closed meanwhile is ENOENT
			linkErr = err
		}
		return linkErr == nil
	})
	if err != nil {
		return err
	}
	return linkErr
}

// classify records descriptor fd, whose /proc link reads link, if it is
// one of the sockets or an epoll instance.
func (p *proc) classify(fd int, link []byte) {
	if string(link) == "anon_inode:[eventpoll]" {
		p.epolls = append(p.epolls, fd)
		return
	}
	ino, ok := bracketed(link, "socket:[")
	switch {
	case ok && p.set.has(ino):
		p.fds = append(p.fds, sockFD{fd: fd, ino: ino})
	case ok:
		p.conns = append(p.conns, sockFD{fd: fd, ino: ino})
	}
}

// bracketed parses a /proc link such as "socket:[4567]" with prefix
// "socket:[".
func bracketed(link []byte, prefix string) (uint64, bool) {
	if len(link) < len(prefix)+2 || string(link[:len(prefix)]) != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	n, ok := atoi(link[len(prefix) : len(link)-1])
	return uint64(n), ok
}

// sockFD returns the descriptor fd of one of the sockets, if fd is one.
func (p *proc) sockFD(fd int) (sockFD, bool) {
	for _, s := range p.fds {
		if s.fd == fd {
			return s, true
		}
	}
	return sockFD{}, false
}

// epollWatches returns why epoll descriptor epfd shows the process
// listening, or "" when it watches none of the sockets for input. Each
// registration is a line of /proc/PID/fdinfo/EPFD:
//
//	tfd:        5 events: 8000201d data: 3fdfc3cb6f000002  pos:0 ino:27d09c sdev:9
//
// where ino and sdev, in hexadecimal, identify the file registered even
// after its descriptor tfd is closed or reused. Where a kernel prints no
// ino, tfd must be a descriptor of one of the sockets.
func (p *proc) epollWatches(epfd int) (string, error) {
	fd, err := openat(p.dir, cpathNum(p.path, "fdinfo/", epfd, ""))
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var ino uint64
	err = eachLine(fd, p.data, func(line []byte) bool {
		e, ok := parseRegistration(line)
		if !ok || e.events&unix.EPOLLIN == 0 {
			return true
		}
		if e.hasIno && p.set.hasDev(e.ino, e.dev) {
			ino = e.ino
		} else if s, ok := p.sockFD(e.tfd); ok && !e.hasIno {
			ino = s.ino
		}
		return ino == 0
	})
	if err != nil || ino == 0 {
		return "", err
	}
	return fmt.Sprintf("pid %d polls socket:[%d] through epoll fd %d", p.pid, ino, epfd), nil
}

// registration is one line "tfd: ..." of an epoll descriptor's fdinfo.
type registration struct {
	tfd      int
	events   uint32
	ino, dev uint64
	hasIno   bool
}

func parseRegistration(line []byte) (registration, bool) {
	var r registration
	tfd, ok := field(line, "tfd:", 10)
	if !ok {
		return r, false
	}
	events, ok := field(line, "events:", 16)
	if !ok {
		return r, false
	}
	r.tfd, r.events = int(tfd), uint32(events)
	r.ino, r.hasIno = field(line, "ino:", 16)
	r.dev, _ = field(line, "sdev:", 16)
	return r, true
}

// field parses the number in base that follows key and any blanks in line.
func field(line []byte, key string, base int) (uint64, bool) {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0, false
	}
	v := bytes.TrimLeft(line[i+len(key):], " \t")
	if end := bytes.IndexAny(v, " \t"); end >= 0 {
		v = v[:end]
	}
	n, err := strconv.ParseUint(string(v), base, 64)
	return n, err == nil
}
