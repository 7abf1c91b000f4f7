// Package wire is the stapes session protocol frame codec.
//
// It depends on the standard library only. docs/protocol.md is the normative
// description; this package is its reference implementation. A frame is one
// type byte followed by zero or more tag-length-value fields:
//
//	frame = type:u8 field*
//	field = tag:u8 len:uvarint value[len]
//
// Integer values are unsigned varints inside their value bytes; strings and
// byte strings are raw. Unknown tags are skipped, unknown frame types are
// reported with ErrUnknownType so a reader can skip them.
package wire
