//go:build !linux

package netns

import (
	"errors"
	"fmt"
)

// Create needs Linux namespaces.
func Create(dir string, opts Options) (Paths, error) {
	return Paths{}, fmt.Errorf("create pod namespaces: %w", errors.ErrUnsupported)
}

// Remove needs Linux namespaces.
func Remove(dir string) error {
	return fmt.Errorf("remove pod namespaces: %w", errors.ErrUnsupported)
}

// Do needs Linux namespaces.
func Do(path string, fn func() error) error {
	return fmt.Errorf("enter namespace %s: %w", path, errors.ErrUnsupported)
}
