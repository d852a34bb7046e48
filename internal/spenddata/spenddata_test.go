package spenddata

import (
	"os"
	"testing"
)

func TestEveryFileIsThere(t *testing.T) {
	for _, n := range Names {
		fi, err := os.Stat(Path(n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 10_000 {
			t.Errorf("%s is %d bytes: cut or replaced", n, fi.Size())
		}
	}
}
