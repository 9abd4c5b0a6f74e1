package commands

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTableMatchesTablewriter checks that the table's own layout of ASCII
// tables gives tablewriter's bytes.
func TestTableMatchesTablewriter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cell := func() string {
		const chars = "ab cd:/.-_=[]{}\\"
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteByte(chars[r.IntN(len(chars))])
		}
		return b.String()
	}
	for n := range 300 {
		cols := 1 + r.IntN(6)
		hdr := make([]string, cols)
		for i := range hdr {
			hdr[i] = strings.ToUpper(cell())
			if hdr[i] == "" || n%7 == 0 {
				hdr[i] = "COL"
			}
		}
		var rows [][]string
		for range r.IntN(8) {
			row := make([]string, cols)
			for i := range row {
				row[i] = cell()
			}
			rows = append(rows, row)
		}
		var fast, slow bytes.Buffer
		for _, out := range []*bytes.Buffer{&fast, &slow} {
			tb := newTable(out)
			tb.header(hdr)
			for _, row := range rows {
				tb.append(row)
			}
			var err error
			if out == &slow {
				err = tb.flushTablewriter()
			} else {
				if !tb.ascii {
					t.Fatal("an ASCII table is not taken for one")
				}
				err = tb.flush()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if fast.String() != slow.String() {
			t.Fatalf("table %d: got\n%q\nwant (tablewriter)\n%q", n, fast.String(), slow.String())
		}
	}
}
