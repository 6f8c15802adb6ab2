package dicomwrite

import (
	"crypto/rand"
	"crypto/sha1"
	"math/big"
	"strings"
)

// UIDs written by multiad live under the root 2.25 (ISO/IEC 9834-8, ITU-T
// X.667): "2.25." followed by a UUID as one unsigned decimal integer.
// NameUID derives the UUID from names (a version-5, SHA-1 name-based UUID
// in a multiad namespace), so the same source and model always give the
// same UIDs and a retried or repeated run replaces rather than duplicates
// its output; RandomUID uses a version-4 random UUID.

// uidNamespace is the UUID namespace of NameUID: the 16 ASCII bytes of
// "multiad-dicomuid".
var uidNamespace = [16]byte{0x6d, 0x75, 0x6c, 0x74, 0x69, 0x61, 0x64, 0x2d, 0x64, 0x69, 0x63, 0x6f, 0x6d, 0x75, 0x69, 0x64}

// NameUID returns 2.25.<uuid> for the version-5 UUID of the names joined
// by NUL bytes.
func NameUID(names ...string) string {
	h := sha1.New()
	h.Write(uidNamespace[:])
	h.Write([]byte(strings.Join(names, "\x00")))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return uuidUID(u)
}

// RandomUID returns 2.25.<uuid> for a random (version-4) UUID.
func RandomUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return uuidUID(u)
}

func uuidUID(u [16]byte) string {
	return "2.25." + new(big.Int).SetBytes(u[:]).String()
}

// ValidUID reports whether s is a valid UID: at most 64 characters,
// components of digits separated by single dots, no leading zeros.
func ValidUID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range strings.Split(s, ".") {
		if c == "" || (len(c) > 1 && c[0] == '0') {
			return false
		}
		for _, r := range c {
			if r < '0' || r > '9' {
				return false
			}
		}
	}
	return true
}
