//go:build ignore

// tcpwrites measures what the size of each write costs on a loopback TCP
// connection: it sends 1 GiB in writes of the given size to a reader in
// the same process and prints the wall time and the process's CPU
// seconds (both ends). docs/benchmarks.md ("Gathered TLS records") has
// the figures for 16 KiB (one TLS record per write) against 64 and
// 256 KiB. Build it with 'go build -o tcpwrites deploy/bench/tcpwrites.go'.
//
//	tcpwrites SIZE
package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: tcpwrites SIZE")
	}
	size, err := strconv.Atoi(os.Args[1])
	if err != nil || size <= 0 {
		log.Fatalf("size %q: want a positive number of bytes", os.Args[1])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 256<<10))
		got <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, size)
	const total = 1 << 30
	c0, t0 := cpuSeconds(), time.Now()
	var sent int64
	for sent < total {
		n, err := c.Write(buf)
		if err != nil {
			log.Fatal(err)
		}
		sent += int64(n)
	}
	c.Close()
	if n := <-got; n != sent {
		log.Fatalf("read %d of the %d bytes sent", n, sent)
	}
	fmt.Printf("writes of %d bytes: %.2f s wall, %.2f CPU-s for %d bytes\n", size, time.Since(t0).Seconds(), cpuSeconds()-c0, sent)
}
