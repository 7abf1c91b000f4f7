package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// Reasons a JSON object is refused. They never quote the input.
var (
	errNotObject = errors.New("is not a JSON object")
	errDuplicate = errors.New("has a duplicate member")
	errTrailing  = errors.New("has data after the object")
	errSyntax    = errors.New("is not valid JSON")
	errNull      = errors.New("is null")
	errType      = errors.New("has the wrong JSON type")
)

// decodeObject splits one JSON object into its members. It refuses
// anything but a single object, and duplicate member names (after
// unescaping), which different JSON parsers resolve differently.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	t, err := dec.Token()
	if err != nil {
		return nil, errSyntax
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errSyntax
		}
		name, ok := t.(string)
		if !ok {
			return nil, errSyntax
		}
		if _, dup := members[name]; dup {
			return nil, errDuplicate
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errSyntax
		}
		members[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, errSyntax
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailing
	}
	return members, nil
}

// decodeMember decodes one member value into dst (*string or *int64).
// null is refused rather than silently leaving dst unchanged, and numbers
// must be integers that fit int64.
func decodeMember(raw json.RawMessage, dst any) error {
	if string(bytes.TrimSpace(raw)) == "null" {
		return errNull
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return errType
	}
	return nil
}
