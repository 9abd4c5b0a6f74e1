package render

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// TestLongCellShortened: a cell of megabytes (a hostile stream key; issue
// 13) is shown by its start and end and its length, the line within
// MaxCell bytes of cells, by Table and by Layout alike; short cells are
// kept whole.
func TestLongCellShortened(t *testing.T) {
	key := strings.Repeat("B", 4<<20) + ".3." + strings.Repeat("é", 100) + "inv-tail"
	rows := [][]string{{"SEQ", "KEY"}, {"1", key}, {"2", "short"}}
	var table, layout bytes.Buffer
	tb := NewTable(&table)
	tb.Header(rows[0])
	var l Layout
	for _, r := range rows {
		l.Measure(r)
	}
	lw := l.Writer(&layout)
	lw.Row(rows[0])
	for _, r := range rows[1:] {
		tb.Append(r)
		lw.Row(r)
	}
	if err := tb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	if table.String() != layout.String() {
		t.Errorf("Table and Layout differ")
	}
	lines := strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, line := range lines {
		if len(line) > MaxCell+len("SEQ  ") {
			t.Errorf("a line of %d bytes", len(line))
		}
	}
	want := "...(" + strconv.Itoa(len(key)) + " bytes)..."
	if !strings.HasPrefix(lines[1], "1    BBBB") || !strings.Contains(lines[1], want) || !strings.HasSuffix(lines[1], "éééinv-tail") {
		t.Errorf("row %.80q...%q, want the key's start, %q and its end", lines[1], lines[1][len(lines[1])-40:], want)
	}
	if !strings.HasPrefix(lines[2], "2    short") {
		t.Errorf("row %q", lines[2])
	}
	// At the limit a cell is kept whole.
	if c := strings.Repeat("x", MaxCell); ShortCell(c, MaxCell) != c || len(ShortCell(c+"y", MaxCell)) > MaxCell {
		t.Errorf("ShortCell at the limit")
	}
}
