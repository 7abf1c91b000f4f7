package turn

import (
	"net/netip"
	"testing"
)

// badV4 is an oracle independent of classify4: loopback, private, link-local
// or "this network", from the raw bytes.
func badV4(b [4]byte) bool {
	switch {
	case b[0] == 0, b[0] == 127, b[0] == 10:
		return true
	case b[0] == 172 && b[1]&0xf0 == 16:
		return true
	case b[0] == 192 && b[1] == 168:
		return true
	case b[0] == 169 && b[1] == 254:
		return true
	}
	return false
}

// carriedV4 lists every IPv4 address a 16-byte address could be taken to
// carry: mapped, SIIT, compatible, NAT64 (both prefixes), 6to4 and Teredo.
func carriedV4(b [16]byte) [][4]byte {
	var out [][4]byte
	zero := func(s []byte) bool {
		for _, c := range s {
			if c != 0 {
				return false
			}
		}
		return true
	}
	tail := [4]byte(b[12:16])
	switch {
	case zero(b[:10]) && b[10] == 0xff && b[11] == 0xff: // ::ffff:a.b.c.d
		out = append(out, tail)
	case zero(b[:8]) && b[8] == 0xff && b[9] == 0xff && zero(b[10:12]): // ::ffff:0:a.b.c.d
		out = append(out, tail)
	case zero(b[:12]): // ::a.b.c.d
		out = append(out, tail)
	case b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b: // 64:ff9b::/32 covers both NAT64 prefixes
		out = append(out, tail)
	case b[0] == 0x20 && b[1] == 0x02: // 2002::/16
		out = append(out, [4]byte(b[2:6]))
	case b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0: // 2001::/32
		out = append(out, [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}, [4]byte(b[4:8]))
	}
	return out
}

func FuzzPeerPolicy(f *testing.F) {
	for _, s := range []string{
		"::ffff:127.0.0.1", "64:ff9b::7f00:1", "::", "::1", "2001:db8::1",
		"2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "2606:4700::1111",
	} {
		b := netip.MustParseAddr(s).As16()
		f.Add(append(b[:], 128))
	}
	f.Add([]byte{169, 254, 169, 254, 32})
	f.Add([]byte{8, 8, 8, 8, 0})

	deny, err := NewPeerPolicy(PeerPolicyConfig{RelayAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var bits byte
		if len(data) > 0 {
			bits = data[len(data)-1]
		}
		var addrs []netip.Addr
		if len(data) >= 4 {
			addrs = append(addrs, netip.AddrFrom4([4]byte(data[:4])))
		}
		if len(data) >= 16 {
			addrs = append(addrs, netip.AddrFrom16([16]byte(data[:16])))
		}
		for _, a := range addrs {
			err := deny.Check(a) // must not panic
			var bad bool
			if a.Is4() {
				bad = badV4(a.As4())
				// The mapped form answers exactly as the IPv4 form does.
				if got := reasonOf(deny.Check(netip.AddrFrom16(a.As16()))); got != reasonOf(err) {
					t.Errorf("%v: mapped form reason %q, v4 reason %q", a, got, reasonOf(err))
				}
			} else {
				b := a.As16()
				bad = a.IsUnspecified() || a.IsLoopback() || a.IsLinkLocalUnicast() || b[0]&0xfe == 0xfc
				for _, v4 := range carriedV4(b) {
					bad = bad || badV4(v4)
				}
			}
			if bad && err == nil {
				t.Errorf("Check(%v) = nil, want denied", a)
			}

			// An allow-list entry holding the address is honoured.
			pfx := netip.PrefixFrom(a.Unmap(), int(bits)%(a.Unmap().BitLen()+1))
			allow, err := NewPeerPolicy(PeerPolicyConfig{Allow: []netip.Prefix{pfx}})
			if err != nil {
				t.Fatalf("NewPeerPolicy(allow %v): %v", pfx, err)
			}
			if err := allow.Check(a); err != nil {
				t.Errorf("allow %v: Check(%v) = %v, want nil", pfx, a, err)
			}
		}
	})
}
