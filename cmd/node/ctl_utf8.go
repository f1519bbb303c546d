package main

import (
	"fmt"
	"unicode/utf8"
)

// checkUTF8 refuses arguments that are not valid UTF-8 before any node is
// asked. The node refuses such strings too, but a body is sent as JSON,
// and encoding/json replaces each invalid byte with U+FFFD: `ctl reset
// RULE $'\xff'` would reset the key "\ufffd", another key, and say it had
// succeeded.
func checkUTF8(cmd string, args ...string) error {
	for _, a := range args {
		if !utf8.ValidString(a) {
			return fmt.Errorf("ctl %s: %q: must be valid UTF-8 (keys, names and values are taken exactly as written)", cmd, a)
		}
	}
	return nil
}
