package master

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/pingora-go/pingora/config"
)

// identity is who workers run as. cred is nil when the master is not root:
// it cannot switch users, so workers run as the master's own user (a
// development setup), which the master warns about.
type identity struct {
	cred       *syscall.Credential
	user       string
	group      string
	uid, gid   int
	privileged bool // the master is root and drops privileges for workers
}

// resolveIdentity looks up the configured user and group. The group
// defaults to the user's primary group; supplementary groups are exactly
// that one group, so workers carry none of root's.
func resolveIdentity(cfg *config.Config) (*identity, error) {
	if os.Geteuid() != 0 {
		return &identity{uid: os.Getuid(), gid: os.Getgid()}, nil
	}
	u, err := lookupUser(cfg.User)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %q: bad uid %q", cfg.User, u.Uid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("user %q is root: workers must run as an unprivileged user", cfg.User)
	}
	gidStr, groupName := u.Gid, cfg.Group
	if cfg.Group != "" {
		g, err := lookupGroup(cfg.Group)
		if err != nil {
			return nil, err
		}
		gidStr = g.Gid
	}
	gid, err := strconv.Atoi(gidStr)
	if err != nil {
		return nil, fmt.Errorf("group of user %q: bad gid %q", cfg.User, gidStr)
	}
	if groupName == "" {
		if g, err := user.LookupGroupId(gidStr); err == nil {
			groupName = g.Name
		} else {
			groupName = gidStr
		}
	}
	return &identity{
		cred: &syscall.Credential{
			Uid:    uint32(uid),
			Gid:    uint32(gid),
			Groups: []uint32{uint32(gid)},
		},
		user:       cfg.User,
		group:      groupName,
		uid:        uid,
		gid:        gid,
		privileged: true,
	}, nil
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, nerr := strconv.Atoi(name); nerr == nil {
		if u, err2 := user.LookupId(name); err2 == nil {
			return u, nil
		}
	}
	return nil, fmt.Errorf("user %q not found", name)
}

func lookupGroup(name string) (*user.Group, error) {
	g, err := user.LookupGroup(name)
	if err == nil {
		return g, nil
	}
	if _, nerr := strconv.Atoi(name); nerr == nil {
		if g, err2 := user.LookupGroupId(name); err2 == nil {
			return g, nil
		}
	}
	return nil, fmt.Errorf("group %q not found", name)
}
