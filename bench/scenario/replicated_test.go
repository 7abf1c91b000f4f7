package scenario

import "testing"

func TestCommitID(t *testing.T) {
	for _, tc := range []struct {
		ep uint32
		id uint64
	}{{1, 0}, {7, 123456}, {1 << 31, 1 << 40}} {
		ep, id, ok := parseCommitID(commitID(tc.ep, tc.id))
		if !ok || ep != tc.ep || id != tc.id {
			t.Errorf("round trip of %d.%d: got %d.%d %v", tc.ep, tc.id, ep, id, ok)
		}
	}
	for _, bad := range []string{"", "12", "a.1", "1.b", "1.2.3", "99999999999.1"} {
		if _, _, ok := parseCommitID(bad); ok {
			t.Errorf("parseCommitID(%q) ok, want not", bad)
		}
	}
}
