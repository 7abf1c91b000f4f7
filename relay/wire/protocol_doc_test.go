package wire_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stapes-relay/stapes/relay/wire"
)

// docs/protocol.md is normative and this package is its reference
// implementation; these tests keep the two from drifting. Every
// ```hex title=NAME block must equal testdata/golden/NAME.hex, and the
// tables marked <!-- wire:NAME --> must agree with the constants.

var docPath = filepath.Join("..", "..", "docs", "protocol.md")

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("reading the protocol document: %v", err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

var hexBlock = regexp.MustCompile("(?ms)^```hex title=([A-Za-z0-9._-]+)\n(.*?)^```")

func TestDocHexBlocks(t *testing.T) {
	doc := readDoc(t)
	if *update {
		doc = hexBlock.ReplaceAllStringFunc(doc, func(block string) string {
			name := hexBlock.FindStringSubmatch(block)[1]
			want, err := os.ReadFile(goldenPath(name))
			if err != nil {
				return block // reported below
			}
			return "```hex title=" + name + "\n" + string(want) + "```"
		})
		if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inDoc := map[string]bool{}
	for _, m := range hexBlock.FindAllStringSubmatch(doc, -1) {
		name, body := m[1], m[2]
		t.Run(name, func(t *testing.T) {
			if inDoc[name] {
				t.Errorf("block %s appears twice", name)
			}
			inDoc[name] = true
			want, err := os.ReadFile(goldenPath(name))
			if err != nil {
				t.Fatalf("block %s has no golden file: %v", name, err)
			}
			if body != string(want) {
				t.Errorf("block %s differs from %s (go test ./relay/wire -update).\ndoc:\n%s\ngolden:\n%s",
					name, goldenPath(name), body, want)
			}
		})
	}
	if n := strings.Count(doc, "```hex"); n != len(inDoc) {
		t.Errorf("%d ```hex blocks, %d with a title=NAME the test can check", n, len(inDoc))
	}
	for _, e := range examples {
		if !inDoc[e.name] {
			t.Errorf("example %s is not in the document (add a ```hex title=%s block)", e.name, e.name)
		}
	}
}

// table returns the body rows of the markdown table that follows
// <!-- wire:NAME -->, cells trimmed and stripped of backticks.
func table(t *testing.T, doc, name string) [][]string {
	t.Helper()
	marker := "<!-- wire:" + name + " -->"
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("document has no %s", marker)
	}
	if strings.Count(doc, marker) > 1 {
		t.Fatalf("document has %s twice", marker)
	}
	var rows [][]string
	lines := strings.Split(doc[i+len(marker):], "\n")
	started := false
	for _, line := range lines {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if started {
				break
			}
			continue
		}
		started = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(strings.ReplaceAll(cells[j], "`", ""))
		}
		rows = append(rows, cells)
	}
	if len(rows) < 3 {
		t.Fatalf("table after %s has no body rows", marker)
	}
	return rows[2:] // header and separator
}

// numbered checks a table whose rows start with a number and a name
// against want (number → name); rows whose first cell is not a number
// (ranges, "reserved") are free text.
func numbered(t *testing.T, rows [][]string, what string, want map[uint64]string) {
	t.Helper()
	got := map[uint64]string{}
	for _, r := range rows {
		n, err := strconv.ParseUint(r[0], 0, 64)
		if err != nil {
			continue
		}
		if _, dup := got[n]; dup {
			t.Errorf("%s %s listed twice", what, r[0])
		}
		got[n] = r[1]
	}
	for n, name := range want {
		if got[n] != name {
			t.Errorf("%s %d: document says %q, code says %q", what, n, got[n], name)
		}
	}
	for n, name := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("%s %d %q: not in the code", what, n, name)
		}
	}
}

func TestDocTables(t *testing.T) {
	doc := readDoc(t)

	t.Run("types", func(t *testing.T) {
		want := map[uint64]string{}
		for i := range 256 {
			if wire.Type(i).Known() {
				want[uint64(i)] = wire.Type(i).String()
			}
		}
		numbered(t, table(t, doc, "types"), "type", want)
	})

	t.Run("tags", func(t *testing.T) {
		rows := table(t, doc, "tags")
		want := map[uint64]string{}
		for _, s := range tagSpecs {
			want[uint64(s.tag)] = s.name
		}
		numbered(t, rows, "tag", want)
		for _, r := range rows {
			n, err := strconv.ParseUint(r[0], 0, 8)
			if err != nil {
				continue
			}
			s, ok := specOf(wire.Tag(n))
			if !ok || len(r) < 4 {
				continue
			}
			if r[2] != s.typ.String() {
				t.Errorf("tag %d %s: type %q, want %q", n, s.name, r[2], s.typ)
			}
			if r[3] != s.limitText() {
				t.Errorf("tag %d %s: limit %q, want %q", n, s.name, r[3], s.limitText())
			}
		}
	})

	t.Run("codes", func(t *testing.T) {
		rows := table(t, doc, "codes")
		want := map[uint64]string{}
		for i := range 256 {
			if c := wire.Code(i); !strings.HasPrefix(c.String(), "code_") {
				want[uint64(i)] = c.String()
			}
		}
		numbered(t, rows, "code", want)
		for _, r := range rows {
			n, err := strconv.ParseUint(r[0], 0, 16)
			if err != nil || len(r) < 4 {
				continue
			}
			if wantR := map[bool]string{true: "yes", false: "no"}[wire.Code(n).Retryable()]; r[3] != wantR {
				t.Errorf("code %d %s: retryable %q, want %q", n, r[1], r[3], wantR)
			}
		}
	})

	named := func(what string, n int, name func(uint64) string) {
		t.Run(what, func(t *testing.T) {
			want := map[uint64]string{}
			for i := range n {
				if s := name(uint64(i)); s != "unknown" && s != "app" {
					want[uint64(i)] = s
				}
			}
			numbered(t, table(t, doc, what), what, want)
		})
	}
	named("kinds", 64, func(i uint64) string { return wire.Kind(i).String() })
	named("classes", wire.NumClasses, func(i uint64) string { return wire.Class(i).String() })
	named("stages", 256, func(i uint64) string { return wire.Stage(i).String() })
	named("roles", 256, func(i uint64) string { return wire.Role(i).String() })

	bits := func(what string, names []bitName) {
		t.Run(what, func(t *testing.T) {
			want := map[uint64]string{}
			for _, b := range names {
				want[b.bit] = b.name
			}
			numbered(t, table(t, doc, what), what, want)
		})
	}
	bits("flags", flagNames)
	bits("caps", capNames)

	t.Run("versions", func(t *testing.T) {
		numbered(t, table(t, doc, "versions"), "version", map[uint64]string{1: "1"})
		if wire.VersionMin != 1 || wire.VersionMax != 1 {
			t.Errorf("versions %d..%d: update the versions table", wire.VersionMin, wire.VersionMax)
		}
	})

	t.Run("limits", func(t *testing.T) {
		want := map[string]int{
			"frame size, default":       wire.DefaultMaxFrame,
			"token":                     wire.MaxTokenLen,
			"ids":                       wire.MaxIDLen,
			"text":                      wire.MaxTextLen,
			"config parameters":         wire.MaxParams,
			"config parameter name":     wire.MaxParamNameLen,
			"payload and config, bytes": maxBlob,
		}
		got := map[string]string{}
		for _, r := range table(t, doc, "limits") {
			got[r[0]] = r[1]
		}
		for k, v := range want {
			if !strings.HasPrefix(got[k], strconv.Itoa(v)) {
				t.Errorf("limits row %q: %q, want it to start with %d", k, got[k], v)
			}
		}
	})
}

// TestDocFrameFields checks each frame's field table (<!-- wire:frame NAME -->)
// against the tag table, and that every golden example of that type uses
// only fields its table lists.
func TestDocFrameFields(t *testing.T) {
	doc := readDoc(t)
	for i := range 256 {
		typ := wire.Type(i)
		if !typ.Known() {
			continue
		}
		t.Run(typ.String(), func(t *testing.T) {
			listed := map[wire.Tag]bool{}
			for _, r := range table(t, doc, "frame "+typ.String()) {
				n, err := strconv.ParseUint(r[1], 0, 8)
				if err != nil {
					t.Errorf("row %q: tag %q is not a number", r[0], r[1])
					continue
				}
				s, ok := specOf(wire.Tag(n))
				if !ok || s.name != r[0] {
					t.Errorf("field %q tag %d: the tag table says %q", r[0], n, s.name)
				}
				listed[wire.Tag(n)] = true
			}
			for _, e := range examples {
				if e.frame == nil || e.frame.Type != typ {
					continue
				}
				for _, tag := range presentTags(e.frame) {
					if !listed[tag] {
						s, _ := specOf(tag)
						t.Errorf("example %s uses %s (tag %d), which the %v table does not list", e.name, s.name, tag, typ)
					}
				}
			}
		})
	}
}

// presentTags lists the tags Encode writes for f.
func presentTags(f *wire.Frame) []wire.Tag {
	b := wire.Encode(f)[1:]
	var tags []wire.Tag
	for len(b) > 0 {
		tag, _, _, rest, err := splitField(b)
		if err != nil {
			panic(fmt.Sprintf("splitting own encoding: %v", err))
		}
		tags = append(tags, wire.Tag(tag))
		b = rest
	}
	return slices.Compact(tags)
}
