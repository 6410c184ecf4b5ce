package sandbox

import (
	"io"

	"github.com/sirupsen/logrus"
)

// testManager returns a Manager with no pods or containers and a log that
// writes nothing, for tests that add the objects they need.
func testManager() *Manager {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return &Manager{log: logrus.NewEntry(log), host: hostPod{}, pods: map[string]*pod{}, ctrs: map[string]*container{}}
}
