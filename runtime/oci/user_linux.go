package oci

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// resolveUser computes the process's uid, gid and groups. The user comes from RunAsUsername, else
// RunAsUser, else the image's User ("uid", "name", "uid:gid", "name:group"), else root, and is looked up
// in the image's /etc/passwd and /etc/group. A user name that is not there is an error (api.proto); a
// numeric uid that is not there runs with gid 0.
func resolveUser(sec *Security, img *Image) (specs.User, error) {
	spec, err := userSpec(sec, img)
	if err != nil {
		return specs.User{}, err
	}
	ifs := newImageFS(img)
	passwd, err := readImageFile(ifs, "/etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	group, err := readImageFile(ifs, "/etc/group")
	if err != nil {
		return specs.User{}, err
	}

	exec, err := user.GetExecUser(spec, nil, reader(passwd), reader(group))
	if err != nil {
		return specs.User{}, invalidf("user %q: %w", spec, err)
	}
	u := specs.User{UID: uint32(exec.Uid), GID: uint32(exec.Gid)}
	if sec.RunAsGroup != nil {
		if u.GID, err = toID("run as group", *sec.RunAsGroup); err != nil {
			return specs.User{}, err
		}
	}

	var gids []uint32
	switch sec.SupplementalGroupsPolicy {
	case "", "Merge":
		// The /etc/group memberships belong to the user alone: an explicit group in the image's User
		// ("app:staff") picks the primary gid, it does not cancel the user's memberships.
		// Without a group the lookup above already gave the memberships.
		name, _, _ := strings.Cut(spec, ":")
		member := exec
		if name != spec {
			if member, err = user.GetExecUser(name, nil, reader(passwd), reader(group)); err != nil {
				return specs.User{}, invalidf("user %q: %w", name, err)
			}
		}
		for _, g := range member.Sgids {
			gids = append(gids, uint32(g))
		}
	case "Strict":
	default:
		return specs.User{}, invalidf("supplemental groups policy %q is neither Merge nor Strict", sec.SupplementalGroupsPolicy)
	}
	for _, g := range sec.SupplementalGroups {
		id, err := toID("supplemental group", g)
		if err != nil {
			return specs.User{}, err
		}
		gids = append(gids, id)
	}
	slices.Sort(gids)
	u.AdditionalGids = slices.Compact(gids)
	return u, nil
}

// userSpec picks the user string GetExecUser parses.
func userSpec(sec *Security, img *Image) (string, error) {
	switch {
	case sec.RunAsUsername != "" && sec.RunAsUser != nil:
		return "", invalidf("run as user %d and run as username %q are exclusive", *sec.RunAsUser, sec.RunAsUsername)
	case sec.RunAsUsername != "":
		if strings.Contains(sec.RunAsUsername, ":") {
			return "", invalidf("run as username %q contains ':'", sec.RunAsUsername)
		}
		return sec.RunAsUsername, nil
	case sec.RunAsUser != nil:
		uid, err := toID("run as user", *sec.RunAsUser)
		if err != nil {
			return "", err
		}
		return strconv.FormatUint(uint64(uid), 10), nil
	case sec.RunAsGroup != nil:
		// api.proto: "run_as_group should only be specified when run_as_user or run_as_username is
		// specified; otherwise, the runtime MUST error."
		return "", invalidf("run as group %d is set without run as user or run as username", *sec.RunAsGroup)
	case img.User != "":
		return img.User, nil
	default:
		return "0", nil
	}
}

func toID(field string, v int64) (uint32, error) {
	if v < 0 || v > math.MaxUint32 {
		return 0, invalidf("%s %d is out of range [0, %d]", field, v, uint32(math.MaxUint32))
	}
	return uint32(v), nil
}

// readImageFile returns nil when the image has no such file: user lookups then fall back to numeric ids.
// What it read is kept (imageFiles): every CreateContainer of an image reads the same files again.
func readImageFile(ifs imageFS, name string) ([]byte, error) {
	key := imageFileKey(ifs, name)
	if b, ok := imageFiles.get(key); ok {
		return b, nil
	}
	b, err := ifs.readFile(name)
	switch {
	case err == nil:
	case errors.Is(err, errNotInImage), errors.Is(err, fs.ErrNotExist), errors.Is(err, errNotADirectory):
		b = nil
	default:
		// Everything but a missing file is the image's doing (a FIFO, a device, a huge file, a
		// symlink loop): the image cannot run as it is. Not kept: it is reported each time.
		return nil, invalidf("image file %s: %w", name, err)
	}
	imageFiles.put(key, b)
	return b, nil
}

// reader returns an untyped nil for a missing file: GetExecUser tells "no file" from "empty file" by a nil
// interface.
func reader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// imageFiles holds the image files readImageFile read (nil for one an image does not have), by layer
// stack and name. An unpacked layer never changes: it lies at a path named by its diff id, renamed into
// place once whole, and a container writes only to its own upper dir. Reading /etc/passwd and
// /etc/group below the layers' roots costs ~0.3 ms of CPU per container created, on the path of every
// CreateContainer of a pod reset.
var imageFiles = fileCache{maxBytes: 8 << 20}

// fileCache is a map of file contents bounded in bytes; when full it starts over. A file of more than
// a quarter of the bound is not kept: an image's huge /etc/passwd does not push out everyone else's.
type fileCache struct {
	maxBytes int

	mu    sync.Mutex
	files map[string][]byte
	size  int
}

func (c *fileCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.files[key]
	return b, ok
}

func (c *fileCache) put(key string, b []byte) {
	n := len(key) + len(b)
	if n > c.maxBytes/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil || c.size+n > c.maxBytes {
		c.files, c.size = make(map[string][]byte), 0
	}
	if old, ok := c.files[key]; ok {
		c.size -= len(key) + len(old)
	}
	c.files[key] = b
	c.size += n
}

// imageFileKey names file name of the layer stack of ifs.
func imageFileKey(ifs imageFS, name string) string {
	return strings.Join(ifs.layers, "\x00") + "\x00" + name
}
