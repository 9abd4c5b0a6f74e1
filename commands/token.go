package commands

import (
	"fmt"
	"os"
	"strings"
)

// readTokenFile reads a bearer token from a file: its content without
// leading and trailing white space (a final newline, say). The token must
// be one word of printable ASCII, as a gRPC metadata value is.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s holds no token", path)
	}
	for _, c := range []byte(tok) {
		if c < 0x21 || c > 0x7e {
			return "", fmt.Errorf("%s: the token must be one word of printable ASCII", path)
		}
	}
	return tok, nil
}
