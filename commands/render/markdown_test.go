package render

import (
	"bytes"
	"testing"
)

func TestMarkdownText(t *testing.T) {
	for in, want := range map[string]string{
		"bes tests: 657fb236-551f":        "bes tests: 657fb236-551f",
		"target //a:b (ANALYSIS_FAILURE)": "target //a:b (ANALYSIS_FAILURE)",
		"_x_ *y* `z` [l](u) <b> & #":      `\_x\_ \*y\* \` + "`" + `z\` + "`" + ` \[l\](u) \<b\> \& \#`,
		"a|b\nc\x1bd":                     `a\|b c\\x1bd`,
	} {
		if got := MarkdownText(in); got != want {
			t.Errorf("MarkdownText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdownCell(t *testing.T) {
	for in, want := range map[string]string{
		"a|b":          `a\|b`,
		"line1\nline2": "line1<br>line2",
		"<b>&":         "&lt;b&gt;&amp;",
		`back\slash`:   `back\\slash`,
		"  padded  ":   "padded",
	} {
		if got := MarkdownCell(in); got != want {
			t.Errorf("MarkdownCell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdownTable(t *testing.T) {
	var b bytes.Buffer
	if err := MarkdownTable(&b, []string{"LABEL", "STATUS"}, [][]string{{"//a:b", "FAILED"}, {"//c|d", "<x>"}}); err != nil {
		t.Fatal(err)
	}
	want := "| LABEL | STATUS |\n| --- | --- |\n| //a:b | FAILED |\n| //c\\|d | &lt;x&gt; |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
