package render

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
)

// TestTableMatchesTablewriter checks that the table's own layout, and a
// Layout's in two passes, give tablewriter's bytes: for ASCII tables (the
// first 300) and for tables with accented letters, the ellipsis bes
// truncates with, East Asian wide characters, combining marks, emoji and
// the escapes of control characters in rows.
func TestTableMatchesTablewriter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ascii := []rune("ab cd:/.-_=[]{}\\")
	wide := append(ascii, []rune("é…—ü测试ｶ\u0301😀\u200b")...)
	chars := ascii
	controls := []rune("\x1b\t\n\u202e\x7f")
	cell := func() string {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteRune(chars[r.IntN(len(chars))])
		}
		return b.String()
	}
	for n := range 600 {
		if n == 300 {
			chars = wide
		}
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
				if n >= 300 && r.IntN(5) == 0 {
					// What SafeCell escapes: a table row is made safe.
					row[i] += string(controls[r.IntN(len(controls))])
				}
			}
			rows = append(rows, row)
		}
		var fast, slow bytes.Buffer
		for _, out := range []*bytes.Buffer{&fast, &slow} {
			tb := NewTable(out)
			tb.Header(hdr)
			for _, row := range rows {
				tb.Append(row)
			}
			var err error
			if out == &slow {
				err = tb.flushTablewriter()
			} else {
				if n < 300 && !tb.ascii {
					t.Fatal("an ASCII table is not taken for one")
				}
				err = tb.Flush()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if fast.String() != slow.String() {
			t.Fatalf("table %d: got\n%q\nwant (tablewriter)\n%q", n, fast.String(), slow.String())
		}
		// The same rows in two passes, holding none.
		var l Layout
		l.Measure(hdr)
		for _, row := range rows {
			l.Measure(row)
		}
		var twice bytes.Buffer
		lw := l.Writer(&twice)
		lw.Row(hdr)
		for _, row := range rows {
			lw.Row(row)
		}
		if err := lw.Flush(); err != nil {
			t.Fatal(err)
		}
		if twice.String() != slow.String() {
			t.Fatalf("table %d in two passes: got\n%q\nwant (tablewriter)\n%q", n, twice.String(), slow.String())
		}
	}
}

// flushTablewriter renders the table with tablewriter itself, the
// reference for Table.Flush, and writes it without trailing blanks.
func (tb *Table) flushTablewriter() error {
	var buf bytes.Buffer
	pad := tw.CellPadding{Global: tw.Padding{Left: "", Right: "  "}}
	t := tablewriter.NewTable(&buf,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Symbols: tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off},
				Lines:      tw.Lines{ShowHeaderLine: tw.Off},
			},
		})),
		tablewriter.WithConfig(tablewriter.Config{
			Header: tw.CellConfig{
				Formatting: tw.CellFormatting{AutoFormat: tw.Off, AutoWrap: tw.WrapNone},
				Alignment:  tw.CellAlignment{Global: tw.AlignLeft},
				Padding:    pad,
			},
			Row: tw.CellConfig{
				Formatting: tw.CellFormatting{AutoWrap: tw.WrapNone},
				Alignment:  tw.CellAlignment{Global: tw.AlignLeft},
				Padding:    pad,
			},
		}),
		tablewriter.WithTrimSpace(tw.Off),
	)
	t.Header(tb.hdr)
	for _, r := range tb.rows {
		// tablewriter only errors on a row of the wrong type; ours are []string.
		_ = t.Append(r)
	}
	if err := t.Render(); err != nil {
		return err
	}
	bw := bufio.NewWriter(tb.w)
	for _, line := range bytes.SplitAfter(buf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		trimmed := bytes.TrimRight(line, " \n")
		bw.Write(trimmed)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
