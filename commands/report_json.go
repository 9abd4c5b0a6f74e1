package commands

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The page's JSON for its tests and output files, the bulk of a big
// build's page (issue 16: 24,297 tests and 20,000 files of a 200 MB BEP
// were 25 MB of JSON), written lean: only the fields page.js draws, those
// with a zero value left out (page.js reads a missing field as empty),
// a configuration's hash cut to 12 digits, and the URIs that begin with the page's common prefix (reportData's
// uri_prefix, "file://…/execroot/ws/bazel-out/k8-fastbuild/") written
// "~" and the rest. The field names are the views' (bes tests --format
// json, bes artifacts), so that the data decodes into their rows.

// pageTests are the tests of a page; they marshal lean.
type pageTests []testRow

// pageArtifacts are the output files of a page; they marshal lean.
type pageArtifacts []artifactRow

// uriPrefixMark begins a URI written without the page's prefix.
const uriPrefixMark = "~"

// commonURIPrefix returns the longest prefix, up to a "/", that the URIs
// share, "" when they share none worth it or one of them begins with
// uriPrefixMark (then no URI is shortened).
func commonURIPrefix(uris func(yield func(string) bool)) string {
	prefix, first := "", true
	for u := range uris {
		if u == "" {
			continue
		}
		if strings.HasPrefix(u, uriPrefixMark) {
			return ""
		}
		if first {
			prefix, first = u, false
			continue
		}
		n := 0
		for n < len(prefix) && n < len(u) && prefix[n] == u[n] {
			n++
		}
		prefix = prefix[:n]
	}
	prefix = prefix[:strings.LastIndexByte(prefix, '/')+1]
	if len(prefix) < 8 {
		return ""
	}
	return prefix
}

// shortURI writes u without prefix, marked, when it begins with it.
func shortURI(u, prefix string) string {
	if prefix != "" && strings.HasPrefix(u, prefix) {
		return uriPrefixMark + u[len(prefix):]
	}
	return u
}

// MarshalJSON writes the tests lean.
func (ts pageTests) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 256*len(ts)+2)
	b = append(b, '[')
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		t := &ts[i]
		o := jsonObject{b: b}
		o.str("label", t.Label, true)
		// Not drawn, so left out: configuration_name, run_count (total_runs
		// is), logs (each run has its own).
		o.str("kind", t.Kind, false)
		o.str("size", t.Size, false)
		if t.DidNotReport {
			o.raw("did_not_report", "true")
		}
		o.str("status", t.Status, true)
		if t.Aborted != nil {
			o.key("aborted")
			a := jsonObject{b: o.b}
			a.str("reason", t.Aborted.Reason, true)
			a.str("description", t.Aborted.Description, false)
			o.b = a.end()
		}
		o.int("total_runs", t.TotalRuns)
		o.int("shards", t.Shards)
		o.int("attempts", t.Attempts)
		o.int("cached", t.Cached)
		o.float("duration_seconds", t.Duration)
		o.key("runs")
		o.b = append(o.b, '[')
		for j := range t.Runs {
			if j > 0 {
				o.b = append(o.b, ',')
			}
			r := &t.Runs[j]
			ro := jsonObject{b: o.b}
			ro.int("run", r.Run)
			ro.int("shard", r.Shard)
			ro.int("attempt", r.Attempt)
			ro.str("status", r.Status, true)
			ro.str("status_details", r.StatusDetails, false)
			if r.CachedLocally {
				ro.raw("cached_locally", "true")
			}
			if r.CachedRemotely {
				ro.raw("cached_remotely", "true")
			}
			ro.float("duration_seconds", r.Duration)
			ro.time("start", r.Start)
			ro.str("strategy", r.Strategy, false)
			ro.str("hostname", r.Hostname, false)
			ro.str("log", r.Log, false)
			if r.LogTail > 0 {
				ro.int("log_tail", r.LogTail)
			}
			o.b = ro.end()
		}
		o.b = append(o.b, ']')
		b = o.end()
	}
	return append(b, ']'), nil
}

// MarshalJSON writes the output files lean.
func (as pageArtifacts) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 160*len(as)+2)
	b = append(b, '[')
	for i := range as {
		if i > 0 {
			b = append(b, ',')
		}
		a := &as[i]
		o := jsonObject{b: b}
		o.str("label", a.Label, true)
		// page.js tells a target's configurations apart by it, and shows
		// none: the first 12 digits of its hash do.
		o.str("configuration", a.Configuration[:min(len(a.Configuration), 12)], false)
		o.str("aspect", a.Aspect, false)
		o.str("output_group", a.Group, false)
		o.str("name", a.Name, true)
		o.str("uri", a.URI, false)
		if len(a.PathPrefix) > 0 {
			o.key("path_prefix")
			o.b = append(o.b, '[')
			for j, p := range a.PathPrefix {
				if j > 0 {
					o.b = append(o.b, ',')
				}
				o.b = appendJSONString(o.b, p)
			}
			o.b = append(o.b, ']')
		}
		if a.Length != 0 {
			o.key("length")
			o.b = strconv.AppendInt(o.b, a.Length, 10)
		}
		o.str("digest", a.Digest, false)
		if a.Important {
			o.raw("important", "true")
		}
		if a.Directory {
			o.raw("directory", "true")
		}
		if a.Incomplete {
			o.raw("incomplete", "true")
		}
		b = o.end()
	}
	return append(b, ']'), nil
}

// jsonObject appends one JSON object's members to b.
type jsonObject struct {
	b    []byte
	some bool
}

func (o *jsonObject) key(k string) {
	if o.some {
		o.b = append(o.b, ',')
	} else {
		o.b = append(o.b, '{')
		o.some = true
	}
	o.b = append(o.b, '"')
	o.b = append(o.b, k...)
	o.b = append(o.b, '"', ':')
}

func (o *jsonObject) raw(k, v string) {
	o.key(k)
	o.b = append(o.b, v...)
}

// str writes a string member, an empty one only when always.
func (o *jsonObject) str(k, v string, always bool) {
	if v == "" && !always {
		return
	}
	o.key(k)
	o.b = appendJSONString(o.b, v)
}

func (o *jsonObject) int(k string, v int) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, int64(v), 10)
}

func (o *jsonObject) float(k string, v float64) {
	o.key(k)
	o.b = strconv.AppendFloat(o.b, v, 'f', -1, 64)
}

// time writes t as encoding/json does (RFC 3339 with nanoseconds), nothing
// when it is nil.
func (o *jsonObject) time(k string, t *time.Time) {
	if t == nil {
		return
	}
	o.key(k)
	o.b = append(o.b, '"')
	o.b = t.AppendFormat(o.b, time.RFC3339Nano)
	o.b = append(o.b, '"')
}

func (o *jsonObject) end() []byte {
	if !o.some {
		return append(o.b, '{', '}')
	}
	return append(o.b, '}')
}

// appendJSONString appends s as a JSON string as encoding/json writes it
// with HTML escaping: <, > and & as \u003c, \u003e and \u0026, U+2028 and
// U+2029 escaped, invalid UTF-8 as U+FFFD, so that it cannot end or
// change the <script> element the page inlines it in.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
