//go:build ignore

// fileserver serves a directory with Go's http.FileServer on loopback:
// the reference pull.sh runs curl against. Build it with
// 'go build -o fileserver deploy/bench/fileserver.go'.
//
//	fileserver DIR ADDRFILE
//
// It listens on 127.0.0.1:0 and writes the address it got to ADDRFILE.
package main

import (
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: fileserver DIR ADDRFILE")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(os.Args[2], []byte(ln.Addr().String()), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.FileServer(http.Dir(os.Args[1]))))
}
