package ike

import (
	"fmt"
	"strconv"
)

func errorf(format string, args ...any) error { return fmt.Errorf("ike: "+format, args...) }
func itoa(v int) string                       { return strconv.Itoa(v) }
