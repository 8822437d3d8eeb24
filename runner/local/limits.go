package local

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A sprite's memory and process count are bounded by a cgroup per command
// where aod can make one (cgroup v2, or v1's memory and pids hierarchies:
// root, or a delegated subtree); the command's init joins it before the
// command starts, through a cgroup.procs file the server opened for it.
// Without cgroups, memory falls back to RLIMIT_DATA per process and the
// process count to RLIMIT_NPROC per sprite uid (see identity.go); New says
// so loudly. Disk is watched: the sprite's tree is measured while a
// command runs and the command is killed once it passes the limit (each
// file is also bounded by RLIMIT_FSIZE).

// cgroups is where the sprites' groups are made.
type cgroups struct {
	version int
	dirs    []string // v2: the one aod dir; v1: aod's dir in the memory and the pids hierarchy
}

// groupSeq numbers the groups this process makes (a name must never be
// reused while another backend of the process may still hold it).
var groupSeq atomic.Uint64

// detectCgroups finds a place for the sprites' groups, or says why there is none.
func detectCgroups() (*cgroups, string) {
	const root = "/sys/fs/cgroup"
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return nil, "no cgroup filesystem at " + root
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		// aod's own group: the processes in it keep it from enabling
		// controllers for children, so sprites go in a sibling subtree.
		self, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			return nil, err.Error()
		}
		rel := strings.TrimPrefix(strings.TrimSpace(string(self)), "0::")
		parent := filepath.Join(root, filepath.Dir(rel))
		dir := filepath.Join(parent, "aod-sprites")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, "cannot create " + dir + ": " + err.Error()
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +pids"), 0); err != nil {
			return nil, "cannot enable the memory and pids controllers in " + dir + ": " + err.Error()
		}
		return usable(&cgroups{version: 2, dirs: []string{dir}})
	}
	var dirs []string
	for _, c := range []string{"memory", "pids"} {
		dir := filepath.Join(root, c, "aod-sprites")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Sprintf("no writable cgroup v1 %s hierarchy (%v)", c, err)
		}
		dirs = append(dirs, dir)
	}
	return usable(&cgroups{version: 1, dirs: dirs})
}

// usable proves aod can make groups where c says (the parent may exist
// and still be someone else's) and removes what a previous run left.
func usable(c *cgroups) (*cgroups, string) {
	for _, d := range c.dirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			// Leftovers of a server that died (several may share the dir:
			// a group's name carries its server's pid).
			if f := strings.Split(e.Name(), "."); e.IsDir() && len(f) == 3 {
				if pid, err := strconv.Atoi(f[1]); err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
					os.Remove(filepath.Join(d, e.Name()))
				}
			}
		}
		probe := filepath.Join(d, ".probe")
		if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, "cannot create a group in " + d + ": " + err.Error()
		}
		os.Remove(probe)
	}
	return c, ""
}

// cgroup is one command's group.
type cgroup struct {
	c     *cgroups
	dirs  []string   // as cgroups.dirs, one level down
	procs []*os.File // each dir's cgroup.procs, open for writing: the init joins through them
}

// newGroup makes a group with the limits (0: none for that one).
func (c *cgroups) newGroup(name string, memBytes, pids uint64) (*cgroup, error) {
	g := &cgroup{c: c}
	leaf := fmt.Sprintf("%s.%d.%d", strings.ReplaceAll(name, ".", "_"), os.Getpid(), groupSeq.Add(1))
	for i, d := range c.dirs {
		dir := filepath.Join(d, leaf)
		if err := os.Mkdir(dir, 0o755); err != nil {
			g.remove()
			return nil, err
		}
		g.dirs = append(g.dirs, dir)
		var settings [][2]string
		switch {
		case c.version == 2:
			if memBytes > 0 {
				settings = append(settings, [2]string{"memory.max", strconv.FormatUint(memBytes, 10)}, [2]string{"memory.swap.max", "0"})
			}
			if pids > 0 {
				settings = append(settings, [2]string{"pids.max", strconv.FormatUint(pids, 10)})
			}
		case i == 0 && memBytes > 0: // v1 memory
			settings = append(settings, [2]string{"memory.limit_in_bytes", strconv.FormatUint(memBytes, 10)}, [2]string{"memory.memsw.limit_in_bytes", strconv.FormatUint(memBytes, 10)})
		case i == 1 && pids > 0: // v1 pids
			settings = append(settings, [2]string{"pids.max", strconv.FormatUint(pids, 10)})
		}
		for _, s := range settings {
			err := os.WriteFile(filepath.Join(dir, s[0]), []byte(s[1]), 0)
			if err != nil && !(errors.Is(err, fs.ErrNotExist) && strings.Contains(s[0], "sw")) { // swap accounting may be off
				g.remove()
				return nil, fmt.Errorf("cgroup %s: %w", s[0], err)
			}
		}
		f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			g.remove()
			return nil, err
		}
		g.procs = append(g.procs, f)
	}
	return g, nil
}

// oomKilled reports whether the memory limit killed a process.
func (g *cgroup) oomKilled() bool {
	file, key := "memory.events", "oom_kill"
	if g.c.version == 1 {
		file = "memory.oom_control"
	}
	f, err := os.Open(filepath.Join(g.dirs[0], file))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == key {
			n, _ := strconv.Atoi(v)
			return n > 0
		}
	}
	return false
}

// remove kills what is left in the group and removes it.
func (g *cgroup) remove() {
	for _, f := range g.procs {
		f.Close()
	}
	g.procs = nil
	for i := len(g.dirs) - 1; i >= 0; i-- {
		dir := g.dirs[i]
		for try := 0; try < 50; try++ {
			if g.c.version == 2 {
				os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
			} else if data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err == nil {
				for _, l := range strings.Fields(string(data)) {
					if pid, err := strconv.Atoi(l); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if err := os.Remove(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	g.dirs = nil
}
