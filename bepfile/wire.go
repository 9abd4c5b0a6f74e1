package bepfile

import "google.golang.org/protobuf/encoding/protowire"

// EachField calls fn for each top-level field of the encoded message b: v is
// the content of a length-delimited field, x the value of a varint field;
// other wire types are skipped. It stops quietly at the first malformed
// field. The packages that read a few fields straight off the wire (store's
// Meta, the query views, the report builder) share it.
func EachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return
			}
			fn(num, typ, nil, x)
			b = b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			fn(num, typ, v, 0)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return
			}
			b = b[n:]
		}
	}
}

// LastBytesField returns the content of the last occurrence of the
// length-delimited field num in message b (the last one wins, as in proto
// merging), or nil.
func LastBytesField(b []byte, num protowire.Number) []byte {
	var out []byte
	EachField(b, func(n protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if n == num && typ == protowire.BytesType {
			out = v
		}
	})
	return out
}

// FirstBytesField returns the content of the first occurrence of the
// length-delimited field num in message b, or nil; unlike LastBytesField
// it stops there, reading no further (an event's id comes first, its
// payload after). A malformed field before it gives nil.
func FirstBytesField(b []byte, num protowire.Number) []byte {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil
			}
			return v
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil
		}
		b = b[l:]
	}
	return nil
}
