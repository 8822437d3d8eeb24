package main

import (
	"testing"

	"github.com/matryer/is"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"209715200": 209715200, "200MiB": 200 << 20, "10GiB": 10 << 30, "1TiB": 1 << 40, "4KiB": 4096,
		"2G": 2 << 30, " 3 MiB ": 3 << 20, "0": 0, "7B": 7,
	} {
		is := is.New(t)
		got, err := parseSize(in)
		is.NoErr(err)              // a size
		is.Equal(int64(got), want) // in bytes
	}
	for _, bad := range []string{"", "ten", "-1", "1.5GiB", "10PiB", "99999999999TiB"} {
		_, err := parseSize(bad)
		is.New(t).True(err != nil) // refused with a message
	}
	is := is.New(t)
	is.Equal(size(2<<30).String(), "2GiB")     // defaults print in their unit
	is.Equal(size(512<<20).String(), "512MiB") // (the README table shows them so)
	is.Equal(size(1000).String(), "1000")      // plain bytes otherwise
	_, err := cli(t, map[string]string{"AOD_MIN_FREE_DISK": "lots"}, "serve", "--listen", "127.0.0.1:0")
	is.True(err != nil) // a malformed AOD_ size refuses to start
}
