package turn

import (
	"errors"
	"testing"
)

func TestParseSecrets(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    int
		wantErr error
	}{
		{"two, newest first", "# rotation\nnew-secret-0123456789abcdef\n\n old-secret-0123456789abcdef \n", 2, nil},
		{"none", "# nothing\n\n", 0, ErrNoSecrets},
		{"short", "short\n", 0, ErrWeakSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSecrets([]byte(tc.in))
			if !errors.Is(err, tc.wantErr) || len(got) != tc.want {
				t.Fatalf("got %d secrets, err %v; want %d, %v", len(got), err, tc.want, tc.wantErr)
			}
			if tc.want == 2 && string(got[1]) != "old-secret-0123456789abcdef" {
				t.Fatalf("second secret %q not trimmed", got[1])
			}
		})
	}
}
