package store

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// TimeFormat is the wire and storage format of every timestamp: UTC,
// microseconds, explicit offset. Stored as text it sorts chronologically.
const TimeFormat = "2006-01-02T15:04:05.000000+00:00"

// FormatTime renders t in TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// ParseTime reads a TimeFormat (or any RFC 3339) timestamp.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(TimeFormat, s)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, s)
	}
	return t.UTC(), err
}

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a lowercase UUID-shaped id whose bytes are a ULID, so ids
// sort by creation time and "newest first" is an index scan.
func NewID() string {
	idMu.Lock()
	u := ulid.MustNew(ulid.Timestamp(time.Now()), idEntropy)
	idMu.Unlock()
	return formatUUID(u[:])
}

func formatUUID(b []byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], b[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], b[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], b[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], b[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], b[10:16])
	return string(buf[:])
}

// CanonicalID returns the canonical lowercase 8-4-4-4-12 form of s, or
// ok=false when s is not a UUID (callers answer 404, never 500).
func CanonicalID(s string) (id string, ok bool) {
	if len(s) != 36 {
		return "", false
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return "", false
	}
	return formatUUID(b), true
}
