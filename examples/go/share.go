// SPDX-License-Identifier: MIT

// share.go — two processes share memory through a capshm region (Go,
// standard library only).
//
//	terminal 1:  go run share.go create     prints the region's name, waits for a reply
//	terminal 2:  go run share.go attach     reads NAME from stdin (or $CAPSHM_NAME),
//	                                        reads the message, writes a reply
//
// The name is the key to the region, so it travels on stdin or in the
// environment, never on the command line (/proc/PID/cmdline is public).
//
// The region is a file: os.OpenFile, Truncate and syscall.Mmap (MAP_SHARED)
// make it a []byte.  The mount is $CAPSHM_DIR, else /run/capshm.  Layout
// (shared by every example): offset 0 the creator's message, offset 2048
// the reply, offset 4095 set to 1 once the reply is complete (written last).
//
// sync/atomic has no byte operations, so the flag at 4095 is read and set
// through the aligned 32-bit word at 4092 that contains it: an atomic
// compare-and-swap (sequentially consistent, so the reply is visible
// before the flag) and an atomic load.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	size  = 4096
	msg   = 0
	reply = 2048
	done  = 4095
)

func dir() string {
	if d := os.Getenv("CAPSHM_DIR"); d != "" {
		return d
	}
	return "/run/capshm"
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "share.go: "+format+"\n", a...)
	os.Exit(1)
}

// mapRegion maps the region's first size bytes, shared and read-write.
func mapRegion(f *os.File) []byte {
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fail("mmap: %v", err)
	}
	return m
}

// doneWord is the aligned uint32 that holds byte 4095, and shift that
// byte's position in it (native byte order).
func doneWord(m []byte) (*uint32, uint) {
	one := uint32(1)
	little := *(*byte)(unsafe.Pointer(&one)) == 1
	word := (*uint32)(unsafe.Pointer(&m[done&^3]))
	if little {
		return word, 8 * (done & 3)
	}
	return word, 8 * (3 - done&3)
}

func textAt(m []byte, off int) string {
	end := bytes.IndexByte(m[off:], 0)
	if end < 0 {
		end = len(m) - off
	}
	return string(m[off : off+end])
}

func create() int {
	// 1. Mint a name: every read of .new gives a fresh, unguessable one.
	b, err := os.ReadFile(filepath.Join(dir(), ".new"))
	if err != nil {
		fail("%v", err)
	}
	name := strings.TrimSpace(string(b))
	// 2. Create the region under that name and give it a size.
	f, err := os.OpenFile(filepath.Join(dir(), name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fail("%v", err)
	}
	if err := f.Truncate(size); err != nil {
		fail("%v", err)
	}
	m := mapRegion(f)
	f.Close() // the mapping alone keeps the region alive

	copy(m[msg:], fmt.Sprintf("hello from Go, pid %d\x00", os.Getpid()))
	fmt.Println(name) // the name is the capability: pass it on

	word, shift := doneWord(m)
	for i := 0; i < 6000; i++ { // wait up to a minute for the reply
		if atomic.LoadUint32(word)>>shift&0xff == 1 {
			fmt.Printf("reply: %s\n", textAt(m, reply))
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "share.go: no reply within 60 s")
	return 1
}

func attach(name string) int {
	f, err := os.OpenFile(filepath.Join(dir(), name), os.O_RDWR, 0)
	if err != nil {
		fail("%v", err)
	}
	m := mapRegion(f)
	f.Close()

	fmt.Printf("message: %s\n", textAt(m, msg))
	copy(m[reply:done], fmt.Sprintf("thanks from Go, pid %d\x00", os.Getpid()))
	// Last: the reply is complete.  Set byte 4095 to 1 and leave the
	// word's other bytes as they are.
	word, shift := doneWord(m)
	for {
		old := atomic.LoadUint32(word)
		if atomic.CompareAndSwapUint32(word, old, old&^(0xff<<shift)|1<<shift) {
			break
		}
	}
	syscall.Munmap(m)
	return 0
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "create" {
		os.Exit(create())
	}
	if len(os.Args) == 2 && os.Args[1] == "attach" {
		name := os.Getenv("CAPSHM_NAME")
		if name == "" {
			line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			name = strings.TrimSpace(line)
		}
		if name == "" {
			fmt.Fprintln(os.Stderr, "share.go: no NAME on stdin or in CAPSHM_NAME")
			os.Exit(2)
		}
		os.Exit(attach(name))
	}
	fmt.Fprintln(os.Stderr, "usage: share create | share attach  (NAME on stdin or in CAPSHM_NAME)")
	os.Exit(2)
}
