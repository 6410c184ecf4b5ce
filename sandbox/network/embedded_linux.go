package network

import goiptables "github.com/coreos/go-iptables/iptables"

// iptablesLockWait bounds the wait for the xtables lock, in seconds, so a
// stuck iptables user elsewhere fails a Setup instead of hanging it.
const iptablesLockWait = 10

// NewEmbedded returns the embedded network, with its persisted state
// loaded. It changes nothing on the host; see Embedded.
func NewEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	e, err := newEmbedded(cfg, netlinkLinks{}, nil)
	if err != nil {
		return nil, err
	}
	if ipt, err := goiptables.New(goiptables.Timeout(iptablesLockWait)); err != nil {
		e.fw.unavailable = err
	} else {
		e.fw.ipt = ipt
	}
	return e, nil
}
