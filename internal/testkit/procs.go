package testkit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Proc is a live process seen in /proc.
type Proc struct {
	PID, PGID int
	Comm      string // the command name, as in /proc/<pid>/comm
}

// SessionProcs lists the live (non-zombie) processes whose environment
// carries AOD_SESSION_ID=id: the runner marks everything a session starts
// (bwrap, the shell, whatever the shell started) that way, so tests can
// run in parallel and still see only their own session's processes.
func SessionProcs(id string) []Proc { return ProcsWithEnv("AOD_SESSION_ID=" + id) }

// ProcsWithEnv lists the live (non-zombie) processes whose environment has
// the entry kv ("NAME=value").
func ProcsWithEnv(kv string) []Proc {
	var out []Proc
	marker := kv + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(env), marker) {
			continue
		}
		st, pgid := ProcState(pid)
		if st == "" || st == "Z" {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		out = append(out, Proc{PID: pid, PGID: pgid, Comm: strings.TrimSpace(string(comm))})
	}
	return out
}

// Comms lists the processes' command names, nil when there are none.
func Comms(ps []Proc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Comm)
	}
	return out
}

// ProcState reads a process's state letter and process group from
// /proc/<pid>/stat ("" when it is gone).
func ProcState(pid int) (state string, pgid int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 3 {
		return "", 0
	}
	pgid, _ = strconv.Atoi(fields[2])
	return fields[0], pgid
}

// GroupAlive reports whether any non-zombie process is in process group
// pgid.
func GroupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, g := ProcState(pid); g == pgid && st != "" && st != "Z" {
			return true
		}
	}
	return false
}
