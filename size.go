package main

import (
	"fmt"
	"strconv"
	"strings"
)

// size is a byte count flag that takes plain bytes or a binary unit:
// 209715200, 200MiB, 10GiB (also KiB, TiB, and K/M/G/T as the same units).
type size int64

var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}, {"B", 0}}

func parseSize(s string) (size, error) {
	t := strings.TrimSpace(s)
	shift := uint(0)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, shift = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with KiB, MiB, GiB or TiB)", s)
	}
	return size(n << shift), nil
}

// String renders the size in the largest unit that divides it, so a flag's
// default reads 2GiB rather than 2147483648.
func (z size) String() string {
	for _, u := range sizeUnits[:4] {
		if z > 0 && int64(z)%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(z)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(z), 10)
}

func (z *size) Set(s string) error {
	n, err := parseSize(s)
	if err == nil {
		*z = n
	}
	return err
}

func (z *size) Type() string { return "size" }

// size reads a size default from the environment.
func (e envReader) size(key string, def int64) size {
	v := e.getenv(key)
	if v == "" {
		return size(def)
	}
	n, err := parseSize(v)
	if err != nil && *e.err == nil {
		*e.err = fmt.Errorf("%s=%w", key, err)
	}
	return n
}
