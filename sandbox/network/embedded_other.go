//go:build !linux

package network

import (
	"errors"
	"fmt"
)

// NewEmbedded needs Linux bridges, veths and iptables.
func NewEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	return nil, fmt.Errorf("embedded network: %w", errors.ErrUnsupported)
}
