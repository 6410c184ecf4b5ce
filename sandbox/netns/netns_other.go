//go:build !linux

package netns

import (
	"errors"
	"fmt"
	"os"
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

// StartInit needs Linux namespaces.
func StartInit(userns string, argv []string, files []*os.File) (*os.Process, error) {
	return nil, fmt.Errorf("start init in user namespace %s: %w", userns, errors.ErrUnsupported)
}
